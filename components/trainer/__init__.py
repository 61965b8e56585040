"""The model code the TFX Trainer runs: `run_fn.run_fn` trains a Keras model and exports it for serving and TFMA."""

# The per-epoch metrics run_fn writes into the Trainer's model_run folder (read by the runner and the reports).
HISTORY_FILE = "history.json"
