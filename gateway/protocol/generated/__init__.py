"""Generated from protos/{inference.proto, health.proto, reflection.proto} by scripts/generate_stubs.py (grpcio-tools==1.66.2); do not edit."""

from google.protobuf import descriptor_pool

# the descriptors of every module here: private, so that other copies of the same protos in the default pool do not clash
POOL = descriptor_pool.DescriptorPool()
