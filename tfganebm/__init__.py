"""tfganebm: a GAN trained jointly with an energy-based model, Langevin refinement, export."""

import os

# TensorFlow's C++ start-up chatter hides our one-line errors; users can still set it.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
