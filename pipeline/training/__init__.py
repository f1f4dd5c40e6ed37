"""Carrying a Keras model's training setup (optimizer, loss, metrics from `compile()`) over to
PyTorch: read it from the model file (compile_config.py), map it onto PyTorch with every setting
accounted for (mapping.py), write train.py (codegen.py, with the optimizers and losses of
optimizers.py where torch's own differ from Keras's), and check a few optimizer steps on both sides
(stages/training_tf.py, stages/training_torch.py)."""
