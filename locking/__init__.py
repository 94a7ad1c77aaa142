"""Making and breaking password locks (imports nothing at package import; see locking/README.md).

Public API, by module:

- `locking.password`: ``PASSWORD``, ``DECOYS``, ``PLACEMENTS``, ``place(prompt, condition, placement)``,
  ``with_password(prompt)``, ``conditions(n_decoys)``, ``fingerprint()``: the only place the password lives.
- `locking.policies`: ``gold``, ``uniform``, ``fixed``, ``model_policy``, ``harden``, ``with_labels``,
  ``correct``, ``sample``: answer distributions per question id (original choice order).
- `locking.data`: ``lock_examples`` (the pure locking transform), ``sample_examples`` (weak samples),
  ``tokenize`` (-> ``TrainItem``, loss on answer tokens only), ``usable``.
- `locking.train`: ``TrainParams``, ``prepare`` (full / LoRA), ``train``, ``unwrap``.
- `locking.score` / `locking.evalset`: batched first-token answer scoring; questions encoded per condition.
- `locking.checkpoint`: ``save_locked``, ``read``, ``load``, ``resolve``: locked HF directories with their record.
- `locking.controls`: ``noisy``, ``scaled``, ``average`` on state dicts.
- `locking.metrics`: ``pgr``, ``pgr_over_runs``, ``accuracy_of_runs``, ``selected_pgr``, ``total_variation``.
- `locking.unlock`: weak-sample unlocking and the controls (``run_weak``, ``run_many``, ``run_average``,
  ``run_masked``, ``run_noise``, ``run_scale``, ``mitigate``, ``run_large_then_few``).
- `locking.toy` / `locking.toy_pretrain`: the toy organism (task ``toy-max``, tokenizer, tiny Llama, pretraining).
- The ``lock``, ``unlock`` and ``diff`` commands are `commands.lock`, `commands.unlock`, `commands.diff`.
"""
