"""Evaluation of a unified model: understanding, generation, proxy quality and mechanistic analyses."""
