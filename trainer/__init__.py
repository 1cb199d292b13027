"""The trainer: a one-shot program that trains a project's model and rolls it out.

The same program runs as a local subprocess (embedded default) and as a Kubernetes Job.
"""
