"""What a user deploys: ONNX files that keep the compression (``model.onnx``), plain float32
(``model.fp32.onnx``) and int8 for onnxruntime (``model.int8.onnx``), each checked against
torch and measured in onnxruntime. ``compress(..., onnx_dir=...)`` writes them."""
