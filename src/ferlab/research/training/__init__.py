"""Training: loss (Eq. 15), batched augmentation, schedules and the training loop."""
