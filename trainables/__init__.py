"""What runs inside a trial: data, models, losses, metrics and the Tune trainable."""
