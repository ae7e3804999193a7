"""The NumPy core: network, training, data, preprocessing, model files. Never imports Qt."""
