"""Tests of the Helm chart, the Dockerfile and the kind tooling (import helpers as ``charts.chartutil``)."""
