"""Analysis of logged sweeps: reads MLflow (never writes training results) into tidy pandas DataFrames, proj18's
tables and plots, an HTML report (``analysis.report.build_report``) and notebooks (``analysis/notebooks``)."""

from analysis.load import load_bootstrap, load_embeddings, load_history, load_runs, load_scores

__all__ = ["load_bootstrap", "load_embeddings", "load_history", "load_runs", "load_scores"]
