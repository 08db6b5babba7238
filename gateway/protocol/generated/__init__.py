"""Generated from protos/inference.proto by scripts/generate_stubs.py (grpcio-tools==1.66.2); do not edit."""
