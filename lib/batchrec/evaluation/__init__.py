"""Evaluation: hold-out protocols, ranking metrics, parameter search and reports."""
