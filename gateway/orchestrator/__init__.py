"""The seam between the embedded default and Kubernetes: trainings, predictors, rollouts."""
