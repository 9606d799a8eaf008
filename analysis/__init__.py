"""Analysis of logged sweeps: reads MLflow (never writes training results) into tidy pandas DataFrames."""

from analysis.load import load_scores

__all__ = ["load_scores"]
