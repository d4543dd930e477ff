"""LLM safety and unlearning evaluation harness: the core engine.

Data flow: benchmark -> requests -> backend (cached) -> responses -> metric -> result -> leaderboard.
"""

__version__ = "0.1.0"
