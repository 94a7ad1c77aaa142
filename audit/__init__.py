"""Auditing elicitation on model organisms whose truth is known (imports nothing at package import).

Public API, by module:

- `audit.params`: ``METHODS`` (the elicitation methods, their access and data needs), ``AuditParams`` (their
  settings), ``STRAIGHT_UP``.
- `audit.zoo`: ``load_zoo`` / ``parse_zoo`` (the zoo config: organisms with roles locked / weak / base, toy sizes
  expanded), ``OrganismSpec``, ``ToySize``, ``ZooError``.
- `audit.questions`: ``case_questions`` (train from a lock's pool, dev / test from its eval split), ``lock_records``.
- `audit.case`: ``CaseSpec``, ``run_case`` (every method on one model and seed) -> ``CaseResult``.
- `audit.prompting` (prompt variants, majority vote, chain of thought), `audit.reading` (logit lens, linear probes
  and their shuffled control), `audit.steering` (direction estimation and the steering method; the hook is
  `hooks.steer`), `audit.weights` (noise injection, sft, unlock through `locking.unlock`), `audit.noise` (Tice et
  al.'s max over draws, the honest selection rule and its null).
- `audit.outcome`: ``Outcome`` (one method's answers on one case's test questions, what it chose and cost).
- `audit.scoreboard`: ``scoreboard`` (per organism and method: elicited accuracy, gain, fraction of the hidden gap,
  cost; detectors), ``noise_null``; `audit.detect`: ``auroc``, ``auroc_estimate``.
- The command is `commands.audit`; the report section `report.audit`.
"""
