//! `TestApp`: the whole application (`trove::app`) on a fresh data dir, driven in process —
//! no socket, no sleeping for a server. Requests are built with [`TestApp::request`] and
//! answer a [`TestResponse`] whose body is read whole (tests send and receive small bodies).

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use trove::auth::{generate_token, hash_token};
use trove::config::Config;
use trove::signing::UrlSigner;
use trove::state::AppState;
use trove_db::{Db, TokenRole};
use trove_store::LocalStore;
use trove_types::RepoName;

/// The public URL the app believes it has; nothing listens there.
pub const PUBLIC_URL: &str = "http://127.0.0.1:9";

pub struct TestApp {
    pub state: AppState,
    router: trove::http::router::App,
    /// The first admin's write token, as `trove serve` creates it (empty for a second node
    /// of a hub: [`TestApp::node`]).
    pub admin_token: String,
    _data_dir: Option<tempfile::TempDir>,
}

impl TestApp {
    pub async fn new() -> TestApp {
        Self::with_config(|_| {}).await
    }

    /// A test hub whose configuration `edit` changes first (a cache turned on, a limit).
    pub async fn with_config(edit: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("trove.db"))
            .await
            .expect("database");
        let app = Self::assemble(db, dir.path(), edit).await;
        assert!(!app.admin_token.is_empty(), "a new data dir gets an admin");
        TestApp {
            _data_dir: Some(dir),
            ..app
        }
    }

    /// A node of a hub on the database `db` and the data dir `data_dir` (kept by the
    /// caller): two of them on one PostgreSQL database and one folder are two nodes. The
    /// first node made on a database gets the admin's token.
    pub async fn node(db: Db, data_dir: &std::path::Path) -> TestApp {
        Self::assemble(db, data_dir, |_| {}).await
    }

    /// The hub on `db` and `data_dir` as `trove serve` makes it: the folders, the store, the
    /// first admin, the state and the router.
    async fn assemble(
        db: Db,
        data_dir: &std::path::Path,
        edit: impl FnOnce(&mut Config),
    ) -> TestApp {
        std::fs::create_dir_all(data_dir.join("repos")).expect("repos dir");
        let store = LocalStore::open(data_dir.join("lfs")).await.expect("store");
        let admin_token = trove::cli::admin::bootstrap_admin(&db, data_dir)
            .await
            .expect("bootstrap")
            .unwrap_or_default();
        let mut config = Config {
            data_dir: data_dir.to_owned(),
            public_url: Some(PUBLIC_URL.into()),
            ..Config::default()
        };
        edit(&mut config);
        let state = AppState::with_hook_exe(
            config,
            db,
            store,
            UrlSigner::new(b"test key".to_vec()),
            env!("CARGO_BIN_EXE_trove").into(),
        )
        .expect("state");
        let router = trove::app(state.clone());
        TestApp {
            state,
            router,
            admin_token,
            _data_dir: None,
        }
    }

    /// A new user with a token of `role` ("read" or "write"); returns the token.
    pub async fn user(&self, name: &str, role: TokenRole) -> String {
        let name = RepoName::parse_namespace(name).expect("valid user name");
        let user = self
            .state
            .db
            .create_user(&name, None, false)
            .await
            .expect("user");
        let token = generate_token();
        self.state
            .db
            .create_token(user.id, "test", role, &hash_token(&token), None, &[])
            .await
            .expect("token");
        token
    }

    /// Creates `admin/{name}` of `repo_type` ("model", "dataset", "space") as the admin.
    pub async fn create_repo(&self, name: &str, repo_type: &str) {
        let created = self
            .post("/api/repos/create")
            .token(&self.admin_token)
            .json(&serde_json::json!({"name": name, "type": repo_type}))
            .send()
            .await;
        assert_eq!(created.status, StatusCode::OK, "{:?}", created.error());
    }

    /// Commits `files` (path, text) to `main` of the model `admin/{name}` through the NDJSON
    /// commit API, as the admin; the commit must succeed.
    pub async fn commit_files(&self, name: &str, summary: &str, files: &[(&str, &str)]) {
        use base64::Engine;
        let mut body = format!(
            "{}\n",
            serde_json::json!({"key": "header", "value": {"summary": summary, "description": ""}})
        );
        for (path, text) in files {
            let content = base64::engine::general_purpose::STANDARD.encode(text);
            body.push_str(&format!(
                "{}\n",
                serde_json::json!({"key": "file", "value": {"path": path, "encoding": "base64",
                    "content": content}})
            ));
        }
        let committed = self
            .post(&format!("/api/models/admin/{name}/commit/main"))
            .token(&self.admin_token)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await;
        assert_eq!(committed.status, StatusCode::OK, "{:?}", committed.error());
    }

    /// The router, for a test that serves it on a socket (`http::driver`).
    pub fn router(&self) -> trove::http::router::App {
        self.router.clone()
    }

    pub fn request(&self, method: Method, uri: &str) -> TestRequest<'_> {
        TestRequest {
            app: self,
            builder: Request::builder().method(method).uri(uri),
            body: Body::empty(),
        }
    }

    pub fn get(&self, uri: &str) -> TestRequest<'_> {
        self.request(Method::GET, uri)
    }

    pub fn post(&self, uri: &str) -> TestRequest<'_> {
        self.request(Method::POST, uri)
    }
}

pub struct TestRequest<'a> {
    app: &'a TestApp,
    builder: axum::http::request::Builder,
    body: Body,
}

impl TestRequest<'_> {
    pub fn token(mut self, token: &str) -> Self {
        self.builder = self
            .builder
            .header("authorization", format!("Bearer {token}"));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    pub fn json(mut self, value: &Value) -> Self {
        self.builder = self.builder.header("content-type", "application/json");
        self.body = Body::from(serde_json::to_vec(value).expect("json"));
        self
    }

    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Body::from(bytes.into());
        self
    }

    pub async fn send(self) -> TestResponse {
        let request = self.builder.body(self.body).expect("request");
        let response = self
            .app
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        TestResponse {
            status,
            headers,
            body,
        }
    }
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The Hub's error headers, `(X-Error-Code, X-Error-Message)`.
    pub fn error(&self) -> (Option<&str>, Option<&str>) {
        (self.header("x-error-code"), self.header("x-error-message"))
    }
}
