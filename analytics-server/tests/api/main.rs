//! HTTP tests of the server: handlers in-process (`poem::test::TestClient` over
//! `MemoryStore`) and a black-box suite against the real `Application` on port 0.

mod alerts;
mod auth;
mod blackbox;
mod business;
mod config;
mod console;
mod dashboard;
mod demo;
mod docs;
mod durability;
mod hardening;
mod health;
mod helpers;
mod ingest;
mod notifications;
mod notify_e2e;
mod postgres_server;
mod projects;
mod query;
mod replicas;
mod spec;
