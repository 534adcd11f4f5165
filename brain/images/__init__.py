"""Images: the service in chat, the batching queue, the job journal, the GPU monitor, backends."""
