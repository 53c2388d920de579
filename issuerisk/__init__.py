"""issuerisk: recurring defect patterns in GitHub issues of PyTorch, TensorFlow and Keras projects, on a risk matrix."""
