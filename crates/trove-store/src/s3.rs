//! [`S3Store`]: visible objects and xorbs in an S3-compatible bucket, through `object_store`.
//!
//! Everything that is staged — bodies being hashed, multipart LFS parts, client xorbs being
//! validated — stays on local disk in a [`LocalStore`] under the data dir, exactly as in the
//! embedded mode. A xorb the server packs from an upload still arriving is built in memory
//! instead when the node-wide packing budget ([`Budgets::pack`], none by default) has room
//! ([`S3Store::xorb_buffer`]): its bytes are durable once the bucket answers its PUT, so a
//! local copy would only cost a write and a read of every byte. Only a verified object is published: uploaded into the bucket
//! (one PUT up to [`SINGLE_PUT_MAX`], else an S3 multipart upload of bounded memory), then
//! its size read back with a HEAD. Memory: at most [`S3Config::memory`] bytes of bodies at
//! once over the node ([`Budgets`]). Objects are immutable and named by their hash, so
//! publishing is create-if-absent by a HEAD first; two nodes racing on one name write the
//! same bytes.
//!
//! # Keys
//!
//! ```text
//! <prefix>objects/ab/cd/<sha256>   whole-file LFS objects (transient: ingested into xorbs)
//! <prefix>xorbs/ab/<xorb hash>     Xet xorbs, chunk records without footer
//! <prefix>gc-trash/<xorb hash>     xorbs garbage collection moved aside while it decides
//! <prefix>probe/<uuid>             written and removed by the start-up/readiness probe
//! ```
//!
//! # Garbage collection's "move aside"
//!
//! S3 has no rename: [`S3Store::trash_xorb`] copies the xorb to `gc-trash/` and then deletes
//! the original. A crash between the two leaves both; the next start's recovery lists
//! `gc-trash/` and either restores (copy back, delete the trash copy) or discards (delete the
//! trash copy) as the database decides, so a needed xorb is never lost. A discarded xorb
//! whose original survived such a crash is an unreferenced file (bytes, not a dangling
//! reference); `trove fsck --repair-index` finds such files.

use crate::durable::{PutOutcome, TempGuard};
use crate::error::StoreError;
use crate::local::LocalStore;
use crate::xorbs::StagedXorb;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, Checksum};
use object_store::path::Path as Key;
use object_store::signer::{HeaderName, HeaderValue, Method, SignedUrlOptions, Signer};
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};
use std::fmt;
use std::io::{self, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use trove_types::Sha256Hex;

/// A body or object read as a stream of byte chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send + 'static>>;

/// Objects up to this size are published with one PUT; larger ones as a multipart upload.
pub const SINGLE_PUT_MAX: u64 = 16 << 20;
/// Xorbs up to this size are published with one PUT when the memory budget holds them (a
/// client's are at most 66 MiB, the server's 64 MiB of chunks plus headers). A multipart upload
/// costs each xorb three more round trips and the S3 server a second write of every byte when
/// it joins the parts, but holds only its parts in flight.
const XORB_SINGLE_PUT_MAX: u64 = 80 << 20;
/// The default of [`S3Config::memory`]: bytes of upload bodies the node holds in memory at
/// once for the bucket, over every upload. The fastest layout measured (xorbs packed and
/// received in memory, each put whole): a node in S3 mode keeps its upload throughput.
/// [`SMALL_S3_MEMORY`] is the other end of the trade.
pub const DEFAULT_S3_MEMORY: u64 = 896 << 20;
/// The budget that keeps a large upload within idle + 64 MiB (issue #17's memory aim; 32 MiB
/// measured idle + 79): every xorb is packed or received into a staging file and published
/// in parts of [`PART_SIZE`], one in flight and the next being read, over the whole node —
/// at about 1 CPU-second more per GiB and a third to half the upload rate (docs/storage.md).
pub const SMALL_S3_MEMORY: u64 = 16 << 20;
/// Of [`S3Config::memory`], at most this much is the publish budget ([`Budgets::publish`]);
/// what is over it is the packing budget ([`Budgets::pack`]). 896 MiB gives the fastest
/// layout measured: 512 MiB to publish and six 64 MiB xorbs packed in memory.
const PUBLISH_MEMORY_MAX: u64 = 512 << 20;
/// Xorb buffers kept for reuse once their PUT is answered (at most this many, 64 MiB each,
/// outside the packing budget, only when there is one): a fresh one costs the kernel a page
/// fault and a zeroed page per 4 KiB, about a tenth of Trove's CPU per byte uploaded.
const SPARE_XORB_BUFFERS: usize = 2;
/// Part size of multipart publishing (S3 wants ≥ 5 MiB parts, ≤ 10 000 of them): raised for
/// objects over 80 GB so the count stays under the limit.
const PART_SIZE: u64 = 8 << 20;
/// At most this many parts in flight at once while publishing (fewer when the budget is small).
const PART_CONCURRENCY: usize = 4;

/// How [`S3Config::memory`] is shared, so that a publish from a staging file never waits for
/// memory held by an upload that itself waits for its publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Budgets {
    /// Bodies being published, over every upload: a publish waits for its share (its whole
    /// body for one PUT, its parts in flight for a multipart upload) before it reads its file.
    publish: u64,
    /// Server-built and client xorbs held in memory, being packed or on their way to the
    /// bucket ([`S3Store::xorb_buffer`], [`S3Store::xorb_pieces`]). When it is used up (or
    /// nil, as by default), xorbs go through staging files as in the embedded mode: an
    /// upload never waits for it.
    pack: u64,
}

impl Budgets {
    fn of(memory: u64) -> Self {
        let publish = memory.clamp(PART_SIZE * 2, PUBLISH_MEMORY_MAX);
        Self {
            publish,
            pack: memory.saturating_sub(publish),
        }
    }

    /// How a verified body of `len` bytes is published: one PUT when it is at most
    /// `single_put_max` and the publish budget holds it, else in parts.
    fn publish_plan(&self, len: u64, single_put_max: u64) -> PublishPlan {
        if len <= single_put_max && len <= self.publish {
            return PublishPlan::Single;
        }
        let part = PART_SIZE.max(len.div_ceil(9_000));
        // The part being read counts too.
        let in_flight = usize::try_from(self.publish / part)
            .unwrap_or(usize::MAX)
            .saturating_sub(1)
            .clamp(1, PART_CONCURRENCY);
        PublishPlan::Parts { part, in_flight }
    }
}

/// See [`Budgets::publish_plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PublishPlan {
    Single,
    /// `in_flight` parts of `part` bytes sent at once, and one more being read.
    Parts {
        part: u64,
        in_flight: usize,
    },
}

impl PublishPlan {
    /// Bytes of the body in memory at once.
    fn held(&self, len: u64) -> u64 {
        match *self {
            Self::Single => len,
            Self::Parts { part, in_flight } => part * (in_flight as u64 + 1),
        }
    }
}

/// Where and how to reach the bucket. The secret never appears in `Debug`.
#[derive(Clone)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix inside the bucket ("" or ending in `/`), so several hubs (or test servers)
    /// may share one bucket.
    pub prefix: String,
    /// A custom endpoint (Garage, MinIO, Ceph RGW, …): path-style addressing is used.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// How the bucket checks that the bytes of a PUT arrived intact.
    pub checksum: S3Checksum,
    /// Bytes of upload bodies the node holds in memory at once for the bucket
    /// ([`DEFAULT_S3_MEMORY`]; `[storage] s3_memory_mib`): more packs xorbs in memory and puts
    /// them in one piece, which costs less CPU per byte uploaded.
    pub memory: u64,
}

/// How each PUT's body is checked by the bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum S3Checksum {
    /// `x-amz-checksum-crc64nvme` (the default of AWS's own SDKs since 2025; carry-less
    /// multiply, a small fraction of a hash's cost), with the payload unsigned: the server
    /// computes the CRC of what it received and refuses a mismatch (400 BadDigest).
    #[default]
    Crc64Nvme,
    /// SigV4 signs the SHA-256 of every body (`x-amz-content-sha256`), for servers that do
    /// not know CRC64NVME: a SHA-256 pass over every byte on both sides.
    Sha256,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// `s3://bucket[/prefix]`, for logs.
    pub fn display_url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

/// The S3 backend; see the module docs. Cheap to clone.
#[derive(Clone)]
pub struct S3Store {
    staging: LocalStore,
    bucket: Arc<AmazonS3>,
    /// How [`S3Config::memory`] is shared.
    budgets: Budgets,
    /// [`Budgets::publish`] in MiB permits.
    publish_memory: Arc<Semaphore>,
    /// [`Budgets::pack`] in MiB permits.
    pack_memory: Arc<Semaphore>,
    /// Emptied xorb buffers for the next xorb packed in memory ([`SPARE_XORB_BUFFERS`]).
    spare_buffers: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    prefix: String,
    location: String,
    /// The runtime the store was opened in: the blocking readers ([`Self::open_xorb_at`])
    /// wait on it, so they work from any thread that is not one of its workers (the
    /// blocking pool, or a plain thread that never entered a runtime).
    runtime: tokio::runtime::Handle,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("location", &self.location)
            .field("staging", &self.staging.root())
            .finish()
    }
}

/// How long the readiness probe waits for the bucket (list, put, get, delete together).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

fn backend(op: &'static str, key: &Key) -> impl FnOnce(object_store::Error) -> StoreError {
    let key = key.to_string();
    move |e| {
        let message = e.to_string();
        if unreachable(&e) {
            StoreError::Unreachable { op, key, message }
        } else {
            StoreError::Backend { op, key, message }
        }
    }
}

/// Whether `err` failed in transport (connecting, the request cut off, no answer in time)
/// rather than with an answer of the store: its chain of causes holds object_store's
/// `HttpError` of such a kind. A status from the store (403, 500…) is not an outage we can
/// tell apart here (object_store keeps the status in a type of its own, not public).
fn unreachable(err: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    // Bounded: error chains are a few links long.
    for _ in 0..16 {
        let Some(current) = cause else {
            return false;
        };
        if let Some(http) = current.downcast_ref::<HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        cause = current.source();
    }
    false
}

/// `bytes` as whole MiB permits of [`S3Store::publish_memory`], at least one.
fn mib_permits(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1 << 20).max(1)).unwrap_or(u32::MAX)
}

fn http_range_header() -> HeaderName {
    HeaderName::from_static("range")
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl S3Store {
    /// Open the bucket with local staging under `staging_root`, and prove it works: a small
    /// object is written, read back and deleted. Wrong credentials, a missing bucket or an
    /// unreachable endpoint fail here, with the store's own message.
    pub async fn open(
        staging_root: std::path::PathBuf,
        config: S3Config,
    ) -> Result<Self, StoreError> {
        // reqwest is built without a bundled TLS provider (see the workspace manifest).
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The HTTP client's connections live on this runtime; the blocking readers wait on it.
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| StoreError::Backend {
            op: "configure",
            key: config.display_url(),
            message: format!("the S3 store must be opened inside a Tokio runtime: {e}"),
        })?;
        let staging = LocalStore::open(staging_root).await?;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_retry(RetryConfig {
                max_retries: 5,
                retry_timeout: Duration::from_secs(60),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    // Per request; large bodies stream in parts well inside it.
                    .with_timeout(Duration::from_secs(300)),
            );
        builder = match config.checksum {
            S3Checksum::Crc64Nvme => builder
                .with_unsigned_payload(true)
                .with_checksum_algorithm(Checksum::CRC64NVME),
            S3Checksum::Sha256 => builder.with_unsigned_payload(false),
        };
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let bucket = builder.build().map_err(|e| StoreError::Backend {
            op: "configure",
            key: config.display_url(),
            message: e.to_string(),
        })?;
        let budgets = Budgets::of(config.memory);
        let store = Self {
            staging,
            bucket: Arc::new(bucket),
            budgets,
            publish_memory: Arc::new(Semaphore::new(mib_permits(budgets.publish) as usize)),
            pack_memory: Arc::new(Semaphore::new(
                usize::try_from(budgets.pack >> 20).unwrap_or(usize::MAX),
            )),
            spare_buffers: Arc::default(),
            prefix: config.prefix.clone(),
            location: config.display_url(),
            runtime,
        };
        store.probe().await?;
        Ok(store)
    }

    /// The local staging store (temp files, multipart parts, staged xorbs).
    pub fn staging(&self) -> &LocalStore {
        &self.staging
    }

    /// `s3://bucket/prefix`.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn key(&self, rest: &str) -> Key {
        Key::from(format!("{}{rest}", self.prefix))
    }
    fn object_key(&self, oid: &Sha256Hex) -> Key {
        let h = oid.as_str();
        self.key(&format!("objects/{}/{}/{h}", &h[0..2], &h[2..4]))
    }
    fn xorb_key(&self, hash_hex: &str) -> Key {
        let prefix = hash_hex.get(0..2).unwrap_or("__");
        self.key(&format!("xorbs/{prefix}/{hash_hex}"))
    }
    fn trash_key(&self, hash_hex: &str) -> Key {
        self.key(&format!("gc-trash/{hash_hex}"))
    }

    /// Put, read back and delete a small object (start-up and `/readyz`); the local staging
    /// directory is probed too, since every upload begins there. Bounded by
    /// [`PROBE_TIMEOUT`]: a bucket that accepts connections and never answers makes the
    /// start fail and `/readyz` say 503 within it, not after the requests' own timeout
    /// (minutes, sized for large objects).
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.staging.probe().await?;
        match tokio::time::timeout(PROBE_TIMEOUT, self.probe_bucket()).await {
            Ok(probed) => probed,
            Err(_elapsed) => Err(StoreError::Unreachable {
                op: "probe",
                key: self.key("probe/").to_string(),
                message: format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
            }),
        }
    }

    /// The bucket's part of [`Self::probe`].
    async fn probe_bucket(&self) -> Result<(), StoreError> {
        // A listing first: some servers create a missing bucket on the first PUT, and a
        // hub must not start on a bucket nobody made.
        let probe_dir = self.key("probe");
        self.bucket
            .list_with_delimiter(Some(&probe_dir))
            .await
            .map_err(backend("list", &probe_dir))?;
        let key = self.key(&format!("probe/{}", uuid::Uuid::new_v4().hyphenated()));
        let body = Bytes::from_static(b"trove probe");
        self.bucket
            .put(&key, PutPayload::from_bytes(body.clone()))
            .await
            .map_err(backend("put", &key))?;
        let read = async {
            self.bucket
                .get(&key)
                .await
                .map_err(backend("get", &key))?
                .bytes()
                .await
                .map_err(backend("get", &key))
        }
        .await;
        let deleted = self
            .bucket
            .delete(&key)
            .await
            .map_err(backend("delete", &key));
        let read = read?;
        deleted?;
        if read != body {
            return Err(StoreError::Backend {
                op: "get",
                key: key.to_string(),
                message: "the probe object read back different bytes".into(),
            });
        }
        Ok(())
    }

    /// Size of the object at `key`, `None` if absent.
    async fn head(&self, key: &Key) -> Result<Option<u64>, StoreError> {
        match self.bucket.head(key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(backend("head", key)(e)),
        }
    }

    /// Delete `key`; `false` if it was not there (where the server says so).
    async fn delete(&self, key: &Key) -> Result<bool, StoreError> {
        let existed = self.head(key).await?.is_some();
        match self.bucket.delete(key).await {
            Ok(()) => Ok(existed),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(backend("delete", key)(e)),
        }
    }

    /// `[start, end)` of the object at `key` as a streaming ranged GET; `None` if absent.
    async fn get_range(
        &self,
        key: &Key,
        start: u64,
        end: u64,
    ) -> Result<Option<ByteStream>, StoreError> {
        if start == end {
            return Ok(Some(Box::pin(futures_util::stream::empty())));
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..end)),
            ..GetOptions::default()
        };
        match self.bucket.get_opts(key, options).await {
            Ok(got) => Ok(Some(Box::pin(got.into_stream().map_err(io::Error::other)))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(backend("get", key)(e)),
        }
    }

    /// Upload the local file `path` (`len` bytes, verified) to `key` unless present, then
    /// read its size back: one PUT up to `single_put_max` bytes, else a multipart upload.
    async fn publish_file(
        &self,
        key: &Key,
        path: &std::path::Path,
        len: u64,
        single_put_max: u64,
    ) -> Result<PutOutcome, StoreError> {
        if self.head(key).await?.is_some() {
            return Ok(PutOutcome::AlreadyPresent);
        }
        let io_at = |e: io::Error| StoreError::Io {
            path: path.to_owned(),
            source: e,
        };
        let plan = self.budgets.publish_plan(len, single_put_max);
        let _memory = self
            .publish_memory
            .acquire_many(mib_permits(plan.held(len).min(self.budgets.publish)))
            .await
            .map_err(|e| io_at(io::Error::other(e)))?;
        let mut file = tokio::fs::File::open(path).await.map_err(io_at)?;
        if let PublishPlan::Parts { part, in_flight } = plan {
            let upload = self
                .bucket
                .put_multipart(key)
                .await
                .map_err(backend("put_multipart", key))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, part as usize);
            let mut left = len;
            let sent: Result<(), StoreError> = async {
                while left > 0 {
                    let want = left.min(part);
                    let mut buf = Vec::with_capacity(want as usize);
                    (&mut file)
                        .take(want)
                        .read_to_end(&mut buf)
                        .await
                        .map_err(io_at)?;
                    if buf.len() as u64 != want {
                        return Err(io_at(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the staged file is shorter than verified",
                        )));
                    }
                    left -= want;
                    writer
                        .wait_for_capacity(in_flight)
                        .await
                        .map_err(backend("upload_part", key))?;
                    writer.put(Bytes::from(buf));
                }
                Ok(())
            }
            .await;
            if let Err(e) = sent {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(key = %key, error = %abort, "store.s3_abort_failed");
                }
                return Err(e);
            }
            writer
                .finish()
                .await
                .map_err(backend("complete_multipart", key))?;
        } else {
            let mut buf = Vec::with_capacity(len as usize);
            (&mut file)
                .take(len)
                .read_to_end(&mut buf)
                .await
                .map_err(io_at)?;
            if buf.len() as u64 != len {
                return Err(io_at(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the staged file is shorter than verified",
                )));
            }
            return self.put_bytes(key, Bytes::from(buf)).await;
        }
        self.verify_published(key, len).await
    }

    /// After a publish: the bucket must hold exactly the `len` bytes just put at `key`.
    async fn verify_published(&self, key: &Key, len: u64) -> Result<PutOutcome, StoreError> {
        match self.head(key).await? {
            Some(size) if size == len => Ok(PutOutcome::Stored),
            found => Err(StoreError::Backend {
                op: "verify",
                key: key.to_string(),
                message: format!("published {len} bytes, the bucket holds {found:?}"),
            }),
        }
    }

    /// Upload `bytes` (verified, or packed by this process) to `key` with one PUT, then read
    /// its size back. The caller checked the key is absent and holds the memory.
    async fn put_bytes(&self, key: &Key, bytes: Bytes) -> Result<PutOutcome, StoreError> {
        let len = bytes.len() as u64;
        self.bucket
            .put(key, PutPayload::from_bytes(bytes))
            .await
            .map_err(backend("put", key))?;
        self.verify_published(key, len).await
    }

    /// Every key under `rest` with its size, named by its last segment.
    async fn list(&self, rest: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let prefix = self.key(rest);
        let mut out = Vec::new();
        let mut listing = self.bucket.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(backend("list", &prefix))?;
            if let Some(name) = meta.location.filename() {
                out.push((name.to_owned(), meta.size));
            }
        }
        Ok(out)
    }

    // --- whole-file objects -----------------------------------------------------------------

    /// Verify `body` into staging, then publish it. The staged copy stays as a local cache
    /// for the ingest that follows ([`Self::local_copy`]) until [`Self::remove_object`].
    pub async fn put<S>(
        &self,
        expected: &Sha256Hex,
        expected_size: u64,
        body: S,
    ) -> Result<PutOutcome, StoreError>
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin,
    {
        self.staging.put(expected, expected_size, body).await?;
        self.publish_object(expected, expected_size).await
    }

    /// Complete a multipart upload staged locally. The verified object stays in staging, not
    /// in the bucket: it is ingested into xorbs from there ([`Self::local_copy`]) and removed
    /// ([`Self::remove_object`]), so its bytes cross to the bucket once, as xorbs.
    pub async fn multipart_complete(&self, upload_id: &str) -> Result<PutOutcome, StoreError> {
        let (_, _, outcome) = self.staging.multipart_complete_oid(upload_id).await?;
        Ok(outcome)
    }

    async fn publish_object(&self, oid: &Sha256Hex, size: u64) -> Result<PutOutcome, StoreError> {
        let key = self.object_key(oid);
        let outcome = self
            .publish_file(&key, &self.staging.local_path(oid), size, SINGLE_PUT_MAX)
            .await?;
        tracing::debug!(oid = %oid, size_bytes = size, outcome = ?outcome, "store.s3_put");
        Ok(outcome)
    }

    pub async fn size_of(&self, oid: &Sha256Hex) -> Result<Option<u64>, StoreError> {
        self.head(&self.object_key(oid)).await
    }

    pub async fn remove_object(&self, oid: &Sha256Hex) -> Result<bool, StoreError> {
        let removed = self.delete(&self.object_key(oid)).await?;
        self.staging.remove_object(oid).await?;
        Ok(removed)
    }

    pub async fn whole_objects(&self) -> Result<Vec<(Sha256Hex, u64)>, StoreError> {
        let mut out: Vec<(Sha256Hex, u64)> = self
            .list("objects/")
            .await?
            .into_iter()
            .filter_map(|(name, size)| Sha256Hex::parse(&name).ok().map(|oid| (oid, size)))
            .collect();
        out.sort();
        Ok(out)
    }

    /// `[start, end)` of object `oid`, streamed; see [`crate::Store::open_range`].
    pub async fn open_range(
        &self,
        oid: &Sha256Hex,
        start: u64,
        end: u64,
    ) -> Result<Option<(ByteStream, u64)>, StoreError> {
        let key = self.object_key(oid);
        let Some(size) = self.head(&key).await? else {
            return Ok(None);
        };
        if start > end || end > size {
            return Err(StoreError::RangeNotSatisfiable { start, end, size });
        }
        Ok(self
            .get_range(&key, start, end)
            .await?
            .map(|s| (s, end - start)))
    }

    /// A local file holding object `oid`: the staged copy when this node has one, else a
    /// download into staging's `tmp/` that is removed when the returned guard drops.
    pub async fn local_copy(&self, oid: &Sha256Hex) -> Result<Option<LocalCopy>, StoreError> {
        let cached = self.staging.local_path(oid);
        if tokio::fs::metadata(&cached).await.is_ok() {
            return Ok(Some(LocalCopy::kept(cached)));
        }
        let key = self.object_key(oid);
        let Some(size) = self.head(&key).await? else {
            return Ok(None);
        };
        let Some(mut stream) = self.get_range(&key, 0, size).await? else {
            return Ok(None);
        };
        let path = self.staging.new_tmp_path("copy");
        let guard = TempGuard::file(path.clone());
        let io_at = |e: io::Error| StoreError::Io {
            path: path.clone(),
            source: e,
        };
        let mut out = tokio::fs::File::create(&path).await.map_err(io_at)?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| StoreError::Backend {
                op: "get",
                key: key.to_string(),
                message: e.to_string(),
            })?;
            tokio::io::AsyncWriteExt::write_all(&mut out, &chunk)
                .await
                .map_err(io_at)?;
        }
        tokio::io::AsyncWriteExt::flush(&mut out)
            .await
            .map_err(io_at)?;
        Ok(Some(LocalCopy::temp(guard)))
    }

    /// A presigned GET URL of object `oid`, valid for `ttl`.
    pub async fn presign_object(
        &self,
        oid: &Sha256Hex,
        ttl: Duration,
    ) -> Result<String, StoreError> {
        let key = self.object_key(oid);
        self.presign(&key, ttl).await
    }

    /// A presigned GET URL of xorb `hash_hex`, valid for `ttl`. With `range` (inclusive
    /// bytes), the signature binds the header `Range: bytes=start-end`: the URL fetches that
    /// range and nothing else (a client that sends another or none is refused by the server).
    pub async fn presign_xorb(
        &self,
        hash_hex: &str,
        range: Option<(u64, u64)>,
        ttl: Duration,
    ) -> Result<String, StoreError> {
        let key = self.xorb_key(hash_hex);
        let mut options = SignedUrlOptions::default();
        if let Some((start, end)) = range {
            let value = HeaderValue::from_str(&format!("bytes={start}-{end}")).map_err(|e| {
                StoreError::Backend {
                    op: "presign",
                    key: key.to_string(),
                    message: e.to_string(),
                }
            })?;
            options = options.with_signed_header(http_range_header(), value);
        }
        self.presign_with(&key, ttl, &options).await
    }

    async fn presign(&self, key: &Key, ttl: Duration) -> Result<String, StoreError> {
        self.presign_with(key, ttl, &SignedUrlOptions::default())
            .await
    }

    async fn presign_with(
        &self,
        key: &Key,
        ttl: Duration,
        options: &SignedUrlOptions,
    ) -> Result<String, StoreError> {
        let url = self
            .bucket
            .signed_url_opts(Method::GET, key, ttl, options)
            .await
            .map_err(backend("presign", key))?;
        Ok(url.to_string())
    }

    // --- xorbs -----------------------------------------------------------------------------

    /// Publish a validated staged xorb (its first `content_len` bytes) into the bucket.
    pub async fn publish_xorb(
        &self,
        staged: StagedXorb,
        hash_hex: &str,
        content_len: u64,
    ) -> Result<PutOutcome, StoreError> {
        let key = self.xorb_key(hash_hex);
        let outcome = self
            .publish_file(&key, staged.path(), content_len, XORB_SINGLE_PUT_MAX)
            .await?;
        drop(staged);
        Ok(outcome)
    }

    /// Room in memory for one xorb of at most `max_len` bytes the server packs, if the
    /// node-wide packing budget has it now (never waits): `None` means "pack it into a
    /// staging file". The share is returned when the buffer drops or its PUT is answered.
    pub fn xorb_buffer(&self, max_len: u64) -> Option<XorbBuffer> {
        let cap = usize::try_from(max_len).ok()?;
        // A spare buffer when one is large enough (the smallest such): the budget then
        // counts its whole capacity, since its pages are resident.
        let spare = self.spare_buffers.lock().ok().and_then(|mut spare| {
            let at = (0..spare.len())
                .filter(|&i| spare[i].capacity() >= cap)
                .min_by_key(|&i| spare[i].capacity())?;
            Some(spare.swap_remove(at))
        });
        if let Some(buffer) = spare {
            let held = buffer.capacity() as u64;
            if let Ok(permit) =
                Arc::clone(&self.pack_memory).try_acquire_many_owned(mib_permits(held))
            {
                return Some(XorbBuffer {
                    bytes: buffer,
                    cap,
                    _permit: permit,
                });
            }
            self.keep_spare(buffer);
        }
        let permit = Arc::clone(&self.pack_memory)
            .try_acquire_many_owned(mib_permits(max_len))
            .ok()?;
        Some(XorbBuffer {
            bytes: Vec::with_capacity(cap),
            cap,
            _permit: permit,
        })
    }

    /// Keeps an emptied xorb buffer for reuse: the [`SPARE_XORB_BUFFERS`] largest are kept.
    fn keep_spare(&self, emptied: Vec<u8>) {
        if let Ok(mut spare) = self.spare_buffers.lock() {
            spare.push(emptied);
            spare.sort_by_key(|b| std::cmp::Reverse(b.capacity()));
            spare.truncate(SPARE_XORB_BUFFERS);
        }
    }

    /// Upload a xorb packed in memory ([`Self::xorb_buffer`]) to its key unless present (one
    /// PUT), then read its size back. Its memory share is held until the bucket answers.
    pub async fn publish_xorb_buffer(
        &self,
        buffer: XorbBuffer,
        hash_hex: &str,
    ) -> Result<PutOutcome, StoreError> {
        let key = self.xorb_key(hash_hex);
        if self.head(&key).await?.is_some() {
            return Ok(PutOutcome::AlreadyPresent);
        }
        let XorbBuffer { bytes, _permit, .. } = buffer;
        let bytes = Bytes::from(bytes);
        let outcome = self.put_bytes(&key, bytes.clone()).await;
        if let Some(emptied) = reclaim(bytes) {
            self.keep_spare(emptied);
        }
        outcome
    }

    /// Room for a xorb of at most `limit` bytes held in memory as pieces: a client's xorb
    /// body as it arrived, or a raw xorb the server packs (its records' headers and the
    /// chunks' received bytes), if the node-wide packing budget has room for `limit` bytes
    /// now (never waits): `None` means "stage it in a file". Its PUT then sends those very
    /// pieces ([`Self::publish_received_xorb`]): no staging file written and read back, no
    /// copy.
    pub fn xorb_pieces(&self, limit: u64) -> Option<XorbPieces> {
        let permit = Arc::clone(&self.pack_memory)
            .try_acquire_many_owned(mib_permits(limit))
            .ok()?;
        Some(XorbPieces {
            pieces: Vec::new(),
            len: 0,
            limit,
            _permit: permit,
        })
    }

    /// Uploads a validated client xorb received into memory (its first `content_len` bytes)
    /// to its key unless present (one PUT of its pieces), then reads its size back.
    pub async fn publish_received_xorb(
        &self,
        received: XorbPieces,
        hash_hex: &str,
        content_len: u64,
    ) -> Result<PutOutcome, StoreError> {
        let key = self.xorb_key(hash_hex);
        if self.head(&key).await?.is_some() {
            return Ok(PutOutcome::AlreadyPresent);
        }
        if received.len < content_len {
            return Err(StoreError::Backend {
                op: "put",
                key: key.to_string(),
                message: format!("{} bytes received, {content_len} to publish", received.len),
            });
        }
        let mut left = content_len;
        let payload: PutPayload = received
            .pieces
            .iter()
            .map_while(|piece| {
                let n = (piece.len() as u64).min(left);
                left -= n;
                (n > 0).then(|| piece.slice(..n as usize))
            })
            .collect();
        self.bucket
            .put(&key, payload)
            .await
            .map_err(backend("put", &key))?;
        drop(received);
        self.verify_published(&key, content_len).await
    }

    pub async fn has_xorb(&self, hash_hex: &str) -> Result<bool, StoreError> {
        Ok(self.head(&self.xorb_key(hash_hex)).await?.is_some())
    }

    pub async fn xorb_size(&self, hash_hex: &str) -> Result<Option<u64>, StoreError> {
        self.head(&self.xorb_key(hash_hex)).await
    }

    pub async fn open_xorb_range(
        &self,
        hash_hex: &str,
        start: u64,
        end: u64,
    ) -> Result<Option<ByteStream>, StoreError> {
        self.get_range(&self.xorb_key(hash_hex), start, end).await
    }

    /// Xorb `hash_hex` from byte `start` on, as a blocking reader over one streaming GET.
    /// Blocking: it waits on the runtime the store was opened in, whatever the calling
    /// thread — the blocking pool or a plain thread with no runtime of its own — but never
    /// call it from one of the runtime's worker threads (an async task): tokio refuses to
    /// block a worker and panics.
    pub fn open_xorb_at(
        &self,
        hash_hex: &str,
        start: u64,
    ) -> Result<Option<Box<dyn Read + Send>>, StoreError> {
        let key = self.xorb_key(hash_hex);
        let stream = self.runtime.block_on(async {
            let Some(size) = self.head(&key).await? else {
                return Ok(None);
            };
            self.get_range(&key, start.min(size), size).await
        })?;
        Ok(stream.map(|stream| {
            Box::new(BlockingStreamReader {
                stream,
                handle: self.runtime.clone(),
                chunk: Bytes::new(),
            }) as Box<dyn Read + Send>
        }))
    }

    /// Copy to `gc-trash/`, then delete the original; `None` if it is not stored.
    pub async fn trash_xorb(&self, hash_hex: &str) -> Result<Option<Key>, StoreError> {
        let from = self.xorb_key(hash_hex);
        let to = self.trash_key(hash_hex);
        match self.bucket.copy(&from, &to).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(backend("copy", &from)(e)),
        }
        self.bucket
            .delete(&from)
            .await
            .map_err(backend("delete", &from))?;
        Ok(Some(to))
    }

    pub async fn restore_xorb(&self, hash_hex: &str, trashed: &Key) -> Result<(), StoreError> {
        let dest = self.xorb_key(hash_hex);
        if self.head(&dest).await?.is_none() {
            self.bucket
                .copy(trashed, &dest)
                .await
                .map_err(backend("copy", trashed))?;
        }
        self.delete(trashed).await?;
        Ok(())
    }

    pub async fn discard_trashed_xorb(&self, trashed: &Key) -> Result<(), StoreError> {
        self.delete(trashed).await.map(|_| ())
    }

    pub async fn trashed_xorbs(&self) -> Result<Vec<(String, Key)>, StoreError> {
        Ok(self
            .list("gc-trash/")
            .await?
            .into_iter()
            .map(|(name, _)| {
                let key = self.trash_key(&name);
                (name, key)
            })
            .collect())
    }

    pub async fn stored_xorbs(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.list("xorbs/").await
    }
}

/// The buffer under `bytes`, emptied, if nothing else refers to it any more (the PUT that
/// sent it is over): its pages are mapped already.
fn reclaim(bytes: Bytes) -> Option<Vec<u8>> {
    let mut unique = bytes.try_into_mut().ok()?;
    // Emptied first, so that the conversion moves no bytes.
    unique.clear();
    Some(Vec::from(unique))
}

/// A xorb the server packs in memory (S3 mode, [`S3Store::xorb_buffer`]), with its share of
/// the node's memory budget. Writing past the size it was sized for fails: the budget holds.
#[derive(Debug)]
pub struct XorbBuffer {
    bytes: Vec<u8>,
    cap: usize,
    _permit: OwnedSemaphorePermit,
}

impl XorbBuffer {
    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    /// Keeps the first `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.bytes.truncate(len);
    }
}

impl io::Write for XorbBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len() + buf.len() > self.cap {
            return Err(io::Error::other(format!(
                "a xorb packed in memory would exceed its {} bytes",
                self.cap
            )));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write(buf).map(|_| ())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A client's xorb body held in memory as the pieces it arrived in (S3 mode,
/// [`S3Store::xorb_pieces`]), with its share of the node's memory budget.
#[derive(Debug)]
pub struct XorbPieces {
    pieces: Vec<Bytes>,
    len: u64,
    limit: u64,
    _permit: OwnedSemaphorePermit,
}

impl XorbPieces {
    /// Appends the next piece of the body; a body past the limit is refused.
    pub fn push(&mut self, piece: Bytes) -> Result<(), StoreError> {
        self.len += piece.len() as u64;
        if self.len > self.limit {
            return Err(StoreError::TooLarge { limit: self.limit });
        }
        if !piece.is_empty() {
            self.pieces.push(piece);
        }
        Ok(())
    }
    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A local file holding an object's bytes (see [`crate::Store::local_copy`]): the store's
/// own file, or a downloaded copy in staging's `tmp/` that is removed on drop.
#[derive(Debug)]
pub struct LocalCopy {
    path: std::path::PathBuf,
    _temp: Option<TempGuard>,
}

impl LocalCopy {
    pub(crate) fn kept(path: std::path::PathBuf) -> Self {
        Self { path, _temp: None }
    }
    fn temp(guard: TempGuard) -> Self {
        Self {
            path: guard.path().to_owned(),
            _temp: Some(guard),
        }
    }
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// A [`Read`] over a [`ByteStream`] for blocking code (off the runtime's workers): each
/// refill waits for the stream's next chunk on the runtime `handle`.
struct BlockingStreamReader {
    stream: ByteStream,
    handle: tokio::runtime::Handle,
    chunk: Bytes,
}

impl Read for BlockingStreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                Some(next) => self.chunk = next?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sent_xorb_buffer_is_reclaimed_whole_once_nothing_else_holds_it() {
        let mut v = Vec::with_capacity(1 << 20);
        v.extend_from_slice(&[7u8; 1000]);
        let at = v.as_ptr();
        let bytes = Bytes::from(v);
        let held = bytes.clone();
        assert!(reclaim(bytes).is_none(), "still referred to elsewhere");
        let back = reclaim(held).expect("the only reference");
        assert!(back.is_empty());
        assert_eq!(back.as_ptr(), at, "the same allocation, not a copy");
        assert!(back.capacity() >= 1 << 20, "its whole capacity");
    }

    #[test]
    fn a_small_budget_holds_no_xorb_whole_and_a_publish_at_most_the_budget() {
        let budgets = Budgets::of(SMALL_S3_MEMORY);
        assert_eq!(
            budgets.pack, 0,
            "xorbs are packed and received into staging files"
        );
        // Up to 75 GB, parts are of [`PART_SIZE`]; past it they grow (see the test below).
        for len in [XORB_SINGLE_PUT_MAX, 64 << 20, 10 << 30, 75_000_000_000] {
            let plan = budgets.publish_plan(len, XORB_SINGLE_PUT_MAX);
            assert!(matches!(plan, PublishPlan::Parts { .. }), "{len}: {plan:?}");
            assert!(plan.held(len) <= SMALL_S3_MEMORY, "{len}: {plan:?}");
        }
        // A body smaller than the budget still goes in one piece.
        let small = 4 << 20;
        assert_eq!(
            budgets.publish_plan(small, SINGLE_PUT_MAX),
            PublishPlan::Single
        );
    }

    #[test]
    fn the_default_budget_packs_xorbs_in_memory_and_puts_them_whole() {
        let budgets = Budgets::of(DEFAULT_S3_MEMORY);
        assert_eq!(budgets.publish, 512 << 20);
        assert_eq!(budgets.pack, 384 << 20, "six 64 MiB xorbs");
        let xorb = 64 << 20;
        assert_eq!(
            budgets.publish_plan(xorb, XORB_SINGLE_PUT_MAX),
            PublishPlan::Single
        );
        assert_eq!(
            budgets.publish_plan(1 << 30, SINGLE_PUT_MAX),
            PublishPlan::Parts {
                part: PART_SIZE,
                in_flight: PART_CONCURRENCY
            }
        );
    }

    #[test]
    fn a_part_is_always_in_flight_even_when_the_budget_is_smaller_than_two() {
        let budgets = Budgets::of(0);
        assert_eq!(budgets.publish, 2 * PART_SIZE);
        let plan = budgets.publish_plan(1 << 30, SINGLE_PUT_MAX);
        assert_eq!(
            plan,
            PublishPlan::Parts {
                part: PART_SIZE,
                in_flight: 1
            }
        );
        assert!(plan.held(1 << 30) <= budgets.publish);
        // Parts grow past 80 GB so that there are at most 9,000: in-flight bytes grow with them.
        let huge = 100_000_000_000;
        let PublishPlan::Parts { part, in_flight } = budgets.publish_plan(huge, SINGLE_PUT_MAX)
        else {
            panic!("one PUT of 100 GB");
        };
        assert!(huge.div_ceil(part) <= 9_000 && in_flight == 1);
    }
}
