"""Networks: shared blocks, the conditional generator and discriminator, classifiers."""
