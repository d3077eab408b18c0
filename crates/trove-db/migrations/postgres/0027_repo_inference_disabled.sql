-- A repository setting that turns hosted inference off (besides `inference: false` in the card).
ALTER TABLE repos ADD COLUMN inference_disabled BOOLEAN NOT NULL DEFAULT FALSE;
