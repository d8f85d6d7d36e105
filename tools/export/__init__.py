"""Export trainable TFLite models (dev-time only; needs the `export` extra, TensorFlow).

Importing this package does not import TensorFlow; `agentmesh.tools.export.tf_models`
and `agentmesh.tools.export.exporter` do.
"""
