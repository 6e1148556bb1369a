"""Training: GAN loop, losses and regularisers, augmentation, checkpoints."""
