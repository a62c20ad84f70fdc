//! A dynamic module that does nothing: Envoy's floor for any native HTTP filter.
//!
//! It exports the same `envoy_dynamic_module_on_*` entry points as `filter-native` (ABI
//! `v0.2.0`, Envoy 1.40; signatures as in `filter-native/src/abi.rs`), never calls back into
//! Envoy, and answers every hook with "continue". Envoy still creates a filter object per
//! request and calls request headers, response headers, stream complete and destroy through
//! the ABI: that is what this module measures.

#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_void};

type Ptr = *const c_void;

#[repr(C)]
pub struct EnvoyBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

#[repr(C)]
pub struct HttpHeader {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

const CONTINUE: u32 = 0;
static CONFIG: u8 = 0;
static FILTER: u8 = 0;

fn non_null(at: &'static u8) -> Ptr {
    (at as *const u8).cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    b"v0.2.0\0".as_ptr().cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(_envoy: Ptr, _name: EnvoyBuffer, _config: EnvoyBuffer) -> Ptr {
    non_null(&CONFIG)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(_config: Ptr) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(_envoy: Ptr, _config: Ptr, _event_id: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _envoy: Ptr, _config: Ptr, _callout_id: u64, _result: u32, _headers: *const HttpHeader, _headers_size: usize,
    _chunks: *const EnvoyBuffer, _chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(_config: Ptr, _envoy: Ptr) -> Ptr {
    non_null(&FILTER)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(_envoy: Ptr, _module: Ptr, _end_of_stream: bool) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(_envoy: Ptr, _module: Ptr, _end_of_stream: bool) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(_envoy: Ptr, _module: Ptr) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(_envoy: Ptr, _module: Ptr, _end_of_stream: bool) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(_envoy: Ptr, _module: Ptr, _end_of_stream: bool) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(_envoy: Ptr, _module: Ptr) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _envoy: Ptr, _module: Ptr, _response_code: u32, _details: EnvoyBuffer, _reset_imminent: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy: Ptr, _module: Ptr, _callout_id: u64, _result: u32, _headers: *const HttpHeader, _headers_size: usize,
    _chunks: *const EnvoyBuffer, _chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(_envoy: Ptr, _module: Ptr) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(_module: Ptr) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(_envoy: Ptr, _module: Ptr, _event_id: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(_name: EnvoyBuffer, _config: EnvoyBuffer) -> Ptr {
    std::ptr::null()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(_config: Ptr) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(_envoy: Ptr, _module: Ptr) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(_envoy: Ptr, _module: Ptr) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: Ptr, _module: Ptr, _stream_id: u64, _headers: *const HttpHeader, _headers_size: usize, _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: Ptr, _module: Ptr, _stream_id: u64, _data: *const EnvoyBuffer, _data_count: usize, _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: Ptr, _module: Ptr, _stream_id: u64, _trailers: *const HttpHeader, _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(_envoy: Ptr, _module: Ptr, _stream_id: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(_envoy: Ptr, _module: Ptr, _stream_id: u64, _reason: u32) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _envoy: Ptr, _config: Ptr, _stream_id: u64, _headers: *const HttpHeader, _headers_size: usize, _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _envoy: Ptr, _config: Ptr, _stream_id: u64, _data: *const EnvoyBuffer, _data_count: usize, _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _envoy: Ptr, _config: Ptr, _stream_id: u64, _trailers: *const HttpHeader, _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(_envoy: Ptr, _config: Ptr, _stream_id: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(_envoy: Ptr, _config: Ptr, _stream_id: u64, _reason: u32) {}
