//! Arrow Flight SQL over the lake, for Grafana's Flight SQL data source, ADBC
//! drivers and HOMER 11: statements, prepared statements with parameters,
//! and the catalog calls (`GetTables`, `GetSqlInfo`, …) clients ask first.
//!
//! The same rules as `/query`: the same bearer tokens (or a Basic handshake
//! whose password is one), read-only statements, the row limit, the
//! response limit, the query pool's slots and its timeout for each call.
//! A statement runs whole in `GetFlightInfo` (so its errors are the call's)
//! and its batches wait, bounded in number and age, for the `DoGet` that
//! fetches them.
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use futures::{Stream, TryStreamExt};
use lake::engine::{QueryEngine, QueryError, QueryResult, Statements};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};
use web::ApiTokens;

/// Results computed and not yet fetched, at most; a client that leaves
/// them is refused more until they age out.
pub const MAX_PENDING_RESULTS: usize = 16;
/// How long a computed result waits for its `DoGet`.
pub const RESULT_TTL: Duration = Duration::from_secs(60);
/// Prepared statements held at once.
pub const MAX_PREPARED: usize = 256;
/// The catalog and schema names the lake's tables are listed under (DataFusion's).
const CATALOG: &str = "datafusion";
const SCHEMA: &str = "public";

/// What a client waits for: a result to fetch, or a statement to run.
struct Pending {
    at: Instant,
    result: QueryResult,
}

struct Prepared {
    sql: String,
    params: Vec<String>,
}

/// The Flight SQL service over a [`QueryEngine`].
#[derive(Clone)]
pub struct FlightSql {
    engine: Arc<QueryEngine>,
    tokens: ApiTokens,
    max_response_bytes: usize,
    results: Arc<Mutex<HashMap<String, Pending>>>,
    prepared: Arc<Mutex<HashMap<String, Prepared>>>,
    info: Arc<SqlInfoData>,
}

/// A query failure as the gRPC status a client understands.
fn status(e: QueryError) -> Status {
    match &e {
        QueryError::Busy(_) => Status::resource_exhausted(e.to_string()),
        QueryError::Timeout(_) => Status::deadline_exceeded(e.to_string()),
        QueryError::Internal(_) => Status::internal(e.to_string()),
        _ => Status::invalid_argument(e.to_string()),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type DoGetStream = <FlightSql as FlightService>::DoGetStream;

fn stream_of(schema: SchemaRef, batches: Vec<RecordBatch>) -> Response<DoGetStream> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

impl FlightSql {
    pub fn new(engine: Arc<QueryEngine>, tokens: ApiTokens, max_response_bytes: usize) -> Self {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "HEPop");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        Self {
            engine,
            tokens,
            max_response_bytes,
            results: Arc::default(),
            prepared: Arc::default(),
            info: Arc::new(info.build().expect("static SQL info builds")),
        }
    }

    /// The tonic service to serve.
    pub fn service(self) -> FlightServiceServer<Self> {
        FlightServiceServer::new(self)
    }

    /// A bearer token from the request's `authorization`, when tokens are configured.
    #[allow(clippy::result_large_err)]
    fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        if self.tokens.is_empty() {
            return Ok(());
        }
        let presented = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or_else(|| {
                Status::unauthenticated("missing API token: send `authorization: Bearer <token>`")
            })?;
        if self.tokens.allows(presented.trim().as_bytes()) {
            Ok(())
        } else {
            Err(Status::unauthenticated("invalid API token"))
        }
    }

    /// Runs `sql` with `params` on the query pool; keeps its result for a
    /// `DoGet`; answers the `FlightInfo` that fetches it.
    async fn run(
        &self,
        sql: String,
        params: Vec<String>,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        {
            let mut results = lock(&self.results);
            results.retain(|_, p| p.at.elapsed() < RESULT_TTL);
            if results.len() >= MAX_PENDING_RESULTS {
                return Err(Status::resource_exhausted(format!(
                    "{MAX_PENDING_RESULTS} results wait to be fetched: fetch them or wait {} s",
                    RESULT_TTL.as_secs()
                )));
            }
        }
        let result = self
            .engine
            .job(move |st: Statements| async move {
                let p: Vec<&str> = params.iter().map(String::as_str).collect();
                st.query(&sql, &p).await
            })
            .await
            .map_err(status)?;
        let bytes: usize = result
            .batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum();
        if bytes > self.max_response_bytes {
            return Err(status(QueryError::TooLarge(self.max_response_bytes)));
        }
        let handle = uuid::Uuid::new_v4().to_string();
        let info = FlightInfo::new()
            .try_with_schema(&result.schema)
            .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?
            .with_endpoint(
                FlightEndpoint::new().with_ticket(Ticket::new(
                    TicketStatementQuery {
                        statement_handle: handle.clone().into(),
                    }
                    .as_any()
                    .encode_to_vec(),
                )),
            )
            .with_descriptor(descriptor)
            .with_total_records(result.num_rows() as i64)
            .with_total_bytes(bytes as i64);
        lock(&self.results).insert(
            handle,
            Pending {
                at: Instant::now(),
                result,
            },
        );
        Ok(Response::new(info))
    }

    /// The lake's tables (and views) with their schemas, from the engine's catalog.
    async fn tables(&self) -> Result<Vec<(String, String, SchemaRef)>, Status> {
        self.engine
            .job(|st: Statements| async move {
                let r = st
                    .query(
                        "SELECT table_name, table_type FROM information_schema.tables \
                         WHERE table_schema = 'public' ORDER BY table_name",
                        &[],
                    )
                    .await?;
                let mut out = Vec::new();
                for b in &r.batches {
                    let names = arrow::array::AsArray::as_string::<i32>(b.column(0));
                    let kinds = arrow::array::AsArray::as_string::<i32>(b.column(1));
                    for i in 0..b.num_rows() {
                        let name = names.value(i).to_owned();
                        let kind = match kinds.value(i) {
                            "VIEW" => "VIEW",
                            _ => "TABLE",
                        };
                        let (schema, _) = st.describe(&format!("SELECT * FROM \"{name}\"")).await?;
                        out.push((name, kind.to_owned(), schema));
                    }
                }
                Ok::<_, QueryError>(out)
            })
            .await
            .map_err(status)
    }
}

/// Flight info whose ticket is the command itself (catalog calls).
fn info_for(
    any: arrow_flight::sql::Any,
    schema: &Schema,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(any.encode_to_vec())))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(b) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| {
            Status::internal(format!("encoding a schema: {e}"))
        })?;
    Ok(b)
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    /// Basic authentication whose password is an API token; the token is
    /// answered as the bearer token to send (as Flight SQL clients expect).
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        use base64::Engine;
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let token = if let Some(b64) = header.strip_prefix("Basic ") {
            // Go's Flight client sends it unpadded.
            let b64 = b64.trim().trim_end_matches('=');
            let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(b64)
                .map_err(|_| Status::invalid_argument("Basic credentials are not base64"))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| Status::invalid_argument("Basic credentials are not UTF-8"))?;
            text.split_once(':')
                .map(|(_, p)| p.to_owned())
                .unwrap_or(text)
        } else {
            header
                .strip_prefix("Bearer ")
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        if !self.tokens.is_empty() && !self.tokens.allows(token.as_bytes()) {
            return Err(Status::unauthenticated(
                "invalid credentials: the password is one of HEPop's API tokens",
            ));
        }
        let out = futures::stream::iter([Ok(HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        })]);
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(out));
        if let Ok(v) = MetadataValue::try_from(format!("Bearer {token}")) {
            response.metadata_mut().insert("authorization", v);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request)?;
        self.run(query.query, Vec::new(), request.into_inner())
            .await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.check(&request)?;
        let handle = String::from_utf8_lossy(&ticket.statement_handle).into_owned();
        let pending = lock(&self.results).remove(&handle).ok_or_else(|| {
            Status::not_found("no such result: fetched already, or older than 60 s")
        })?;
        Ok(stream_of(pending.result.schema, pending.result.batches))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        self.check(&request)?;
        let sql = query.query;
        let planned = sql.clone();
        let (schema, params) = self
            .engine
            .job(move |st: Statements| async move { st.describe(&planned).await })
            .await
            .map_err(status)?;
        let param_schema = Schema::new(
            (1..=params)
                .map(|i| Field::new(format!("${i}"), DataType::Utf8, true))
                .collect::<Vec<_>>(),
        );
        let handle = uuid::Uuid::new_v4().to_string();
        {
            let mut prepared = lock(&self.prepared);
            if prepared.len() >= MAX_PREPARED {
                return Err(Status::resource_exhausted(format!(
                    "{MAX_PREPARED} prepared statements are open: close some"
                )));
            }
            prepared.insert(
                handle.clone(),
                Prepared {
                    sql,
                    params: Vec::new(),
                },
            );
        }
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema: schema_bytes(&schema)?,
            parameter_schema: schema_bytes(&param_schema)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.check(&request)?;
        let handle = String::from_utf8_lossy(&query.prepared_statement_handle).into_owned();
        let batches: Vec<RecordBatch> =
            arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
                request
                    .into_inner()
                    .map_err(arrow_flight::error::FlightError::from),
            )
            .try_collect()
            .await
            .map_err(|e| Status::invalid_argument(format!("reading the parameters: {e}")))?;
        // Bound as text, as /query binds them; the first row is the set used.
        let mut values = Vec::new();
        if let Some(b) = batches.iter().find(|b| b.num_rows() > 0) {
            for col in b.columns() {
                let v = arrow::util::display::array_value_to_string(col, 0)
                    .map_err(|e| Status::invalid_argument(format!("a parameter: {e}")))?;
                values.push(v);
            }
        }
        let mut prepared = lock(&self.prepared);
        let p = prepared
            .get_mut(&handle)
            .ok_or_else(|| Status::not_found("no such prepared statement"))?;
        p.params = values;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.into()),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request)?;
        let handle = String::from_utf8_lossy(&cmd.prepared_statement_handle).into_owned();
        let (sql, params) = {
            let prepared = lock(&self.prepared);
            let p = prepared
                .get(&handle)
                .ok_or_else(|| Status::not_found("no such prepared statement"))?;
            (p.sql.clone(), p.params.clone())
        };
        self.run(sql, params, request.into_inner()).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        self.check(&request)?;
        let handle = String::from_utf8_lossy(&query.prepared_statement_handle).into_owned();
        lock(&self.prepared).remove(&handle);
        Ok(())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request)?;
        let schema = query.clone().into_builder(&self.info).schema();
        info_for(query.as_any(), &schema, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.check(&request)?;
        let builder = query.into_builder(&self.info);
        let schema = builder.schema();
        let batch = builder.build().map_err(Status::from)?;
        Ok(stream_of(schema, vec![batch]))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request)?;
        let schema = query.into_builder().schema();
        info_for(query.as_any(), &schema, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.check(&request)?;
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        let schema = builder.schema();
        let batch = builder.build().map_err(Status::from)?;
        Ok(stream_of(schema, vec![batch]))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request)?;
        let schema = query.clone().into_builder().schema();
        info_for(query.as_any(), &schema, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.check(&request)?;
        let mut builder = query.into_builder();
        builder.append(CATALOG, SCHEMA);
        let schema = builder.schema();
        let batch = builder.build().map_err(Status::from)?;
        Ok(stream_of(schema, vec![batch]))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request)?;
        let schema = query.clone().into_builder().schema();
        info_for(query.as_any(), &schema, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.check(&request)?;
        let tables = self.tables().await?;
        let mut builder = query.into_builder();
        for (name, kind, schema) in tables {
            builder
                .append(CATALOG, SCHEMA, name, kind, &schema)
                .map_err(Status::from)?;
        }
        let schema = builder.schema();
        let batch = builder.build().map_err(Status::from)?;
        Ok(stream_of(schema, vec![batch]))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request)?;
        let schema = Schema::new(vec![Field::new("table_type", DataType::Utf8, false)]);
        info_for(query.as_any(), &schema, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        _query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.check(&request)?;
        let schema = Arc::new(Schema::new(vec![Field::new(
            "table_type",
            DataType::Utf8,
            false,
        )]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(arrow::array::StringArray::from(vec![
                "TABLE", "VIEW",
            ]))],
        )
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(stream_of(schema, vec![batch]))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
