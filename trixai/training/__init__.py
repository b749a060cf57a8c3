"""Training: the LightningModule, the objectives, optimiser schedules and the efficiency profile."""
