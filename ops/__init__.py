"""Operations: the local stack, topic creation, the process supervisor and chatctl."""
