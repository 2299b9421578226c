"""Recipes: pure DataFrame-in, artifacts-out training, one module per recipe."""
