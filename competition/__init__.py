"""Competitions: their configs, raw files (download or build) and paths."""
from competition.config import Competition
from competition.errors import PipelineError
from competition.registry import list_competitions, load_competition

__all__ = ["Competition", "PipelineError", "load_competition", "list_competitions"]
