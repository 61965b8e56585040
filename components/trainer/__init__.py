"""The model code the TFX Trainer runs: `run_fn.run_fn` trains a Keras model and exports it for serving and TFMA."""
