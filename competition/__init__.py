"""Competitions: their configs, raw files (download or build) and paths."""
from competition.config import Competition, list_competitions, load_competition
from competition.errors import PipelineError

__all__ = ["Competition", "PipelineError", "load_competition", "list_competitions"]
