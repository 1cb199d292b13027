"""The predictor: a KServe custom model server that segments series sent over the V2 protocol.

It knows nothing about Label Studio: it receives ``FP32 [T, C]`` tensors and returns segments
as row indices, class ids and scores.
"""
