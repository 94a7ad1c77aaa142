"""The elicitation-gap report (the command is `commands.report`); reads typed results and per-question tables only.

- `report.load`, `report.kinds`, `report.rows`: results.json files -> runs with tidy rows;
- `report.outcomes`: each run's samples.parquet -> per-question outcomes of every way of answering;
- `report.gap`: the paired analysis of one model and task (best-of-k chosen on dev, reported on test, against
  straight-up on the same questions; controls; locking);
- `report.findings`: the seeds' questions answered from the analyses;
- `report.tables`, `report.figures`, `report.summary_figures`, `report.html`: what the page shows.
"""
