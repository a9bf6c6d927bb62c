"""What is drawn: static figures (plots) and the training animation (animation)."""
