"""Train the pneumonia-xray CNN on PneumoniaMNIST and export it as ONNX + model card."""
