"""Stage implementations. These modules import TensorFlow or torch and run only inside workers."""
