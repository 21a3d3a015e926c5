"""Evaluation of every task after every update: scores, the accuracy matrix, the promotion gate."""
