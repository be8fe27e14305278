//! Integration tests: the real application on port 0, one data dir each.
//! All in one binary so it links once.

mod auth;
mod concurrency;
mod crash;
mod distributed;
mod hardening;
mod health;
mod helpers;
mod ids;
mod import;
mod links;
mod manage;
mod openapi;
mod redirect;
mod settings;
mod validation;
