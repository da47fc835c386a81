"""The measurement client: load generation over the OpenAI protocol (loadgen), reports, verify."""
