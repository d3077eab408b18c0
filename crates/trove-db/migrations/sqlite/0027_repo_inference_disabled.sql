-- A repository setting that turns hosted inference off (besides `inference: false` in the card).
ALTER TABLE repos ADD COLUMN inference_disabled INTEGER NOT NULL DEFAULT 0
    CHECK (inference_disabled IN (0, 1));
