"""The gateway: Label Studio's ML-backend protocol in front of KServe predictors and trainers.

It never imports torch: predictions go to a predictor over the V2 protocol, trainings are
launched through an :class:`~gateway.orchestrator.base.Orchestrator`.
"""
