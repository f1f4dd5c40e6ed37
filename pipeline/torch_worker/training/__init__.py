"""Carrying a Keras model's training setup (optimizer, loss, metrics from `compile()`) over to
PyTorch. The TF worker reads it from the model file (tf_worker/compile_config.py) and maps it with
every setting accounted for (common/training_mapping.py); here, train.py is written from the mapping
(codegen.py, with the optimizers and losses of keras_compat.py where torch's own differ from Keras's)
and its steps are checked against TF's (stage.py; TF's side is tf_worker/training.py)."""
