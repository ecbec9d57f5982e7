"""The model contract: what training writes, the inference service serves and the gateway stores.

- `card`: the model card (model.json) that travels with every model.onnx;
- `images`: file-type sniffing and decoding (JPEG, PNG, DICOM with its display pipeline);
- `preprocessing`: a decoded image -> the model's input tensor, as the card says;
- `trust`: probability calibration and heatmap normalisation;
- `answer`: the classification answer, built from a model's outputs.
"""
