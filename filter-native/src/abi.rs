//! Our own minimal bindings to Envoy's dynamic-module ABI, for exactly the functions this
//! filter uses. The official Rust SDK is not on crates.io (and git dependencies cannot be
//! fetched where this is built), so these are written by hand from `abi.h`
//! (`source/extensions/dynamic_modules/abi/abi.h`) and checked against it:
//!
//! - The module reports ABI **`v0.2.0`** (Envoy 1.40's `ENVOY_DYNAMIC_MODULES_ABI_VERSION`; the
//!   binary carries the string). Every signature below was checked against the `v0.1.0` header
//!   of Envoy 1.38 (commit eb069979b616), which the ABI promises stays compatible with `v0.2.x`,
//!   and every name against the symbols Envoy 1.40's binary exports
//!   (`strings envoy | grep '^envoy_dynamic_module_'`); `make test` loads the module into that
//!   Envoy and runs the whole end-to-end suite through it.
//! - C enums are `int` (4 bytes) on the platforms Envoy supports: they are `u32` here.
//! - Pointers Envoy hands us are opaque (`*mut c_void`); buffers are (pointer, length) pairs
//!   passed by value, as in the header.
//!
//! In unit tests the callbacks are stubs (there is no Envoy to link against): the glue's
//! logic is tested without them, and the FFI paths by the end-to-end suite.

#![allow(non_camel_case_types, dead_code)]

use std::ffi::{c_char, c_void};

/// `envoy_dynamic_module_type_envoy_buffer`: bytes owned by Envoy, valid for the current hook.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

impl EnvoyBuffer {
    pub const fn null() -> EnvoyBuffer {
        EnvoyBuffer {
            ptr: std::ptr::null(),
            length: 0,
        }
    }

    /// The bytes, or nothing for a null buffer.
    ///
    /// # Safety
    /// `ptr` must point at `length` readable bytes that outlive the returned slice (Envoy
    /// guarantees this until the end of the hook that produced the buffer).
    pub unsafe fn bytes<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            return &[];
        }
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.length) }
    }
}

/// `envoy_dynamic_module_type_module_buffer`: bytes owned by the module, read by Envoy during
/// the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

impl ModuleBuffer {
    pub fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: bytes.as_ptr().cast::<c_char>(),
            length: bytes.len(),
        }
    }

    /// A null buffer: `set_header` with it removes the header.
    pub const fn null() -> ModuleBuffer {
        ModuleBuffer {
            ptr: std::ptr::null(),
            length: 0,
        }
    }
}

/// `envoy_dynamic_module_type_module_http_header` (and, same layout, `..._envoy_http_header`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HttpHeader {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

impl HttpHeader {
    pub fn of(name: &str, value: &str) -> HttpHeader {
        HttpHeader {
            key_ptr: name.as_ptr().cast::<c_char>(),
            key_length: name.len(),
            value_ptr: value.as_ptr().cast::<c_char>(),
            value_length: value.len(),
        }
    }

    pub const fn null() -> HttpHeader {
        HttpHeader {
            key_ptr: std::ptr::null(),
            key_length: 0,
            value_ptr: std::ptr::null(),
            value_length: 0,
        }
    }

    /// Name and value, without trusting their bytes (a value need not be UTF-8).
    ///
    /// # Safety
    /// As [`EnvoyBuffer::bytes`], for both halves.
    pub unsafe fn decode(&self) -> (String, String) {
        // SAFETY: the caller's contract.
        let (name, value) = unsafe { self.bytes() };
        (
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        )
    }

    /// Name and value as raw bytes, borrowed from Envoy.
    ///
    /// # Safety
    /// As [`EnvoyBuffer::bytes`], for both halves.
    pub unsafe fn bytes<'a>(&self) -> (&'a [u8], &'a [u8]) {
        let name = EnvoyBuffer {
            ptr: self.key_ptr,
            length: self.key_length,
        };
        let value = EnvoyBuffer {
            ptr: self.value_ptr,
            length: self.value_length,
        };
        // SAFETY: the caller's contract.
        unsafe { (name.bytes(), value.bytes()) }
    }
}

pub type ConfigEnvoyPtr = *mut c_void;
pub type ConfigModulePtr = *const c_void;
pub type FilterEnvoyPtr = *mut c_void;
pub type FilterModulePtr = *const c_void;
pub type SchedulerPtr = *mut c_void;

// `envoy_dynamic_module_type_http_header_type`
pub const HEADER_REQUEST: u32 = 0;
// `envoy_dynamic_module_type_http_body_type`
pub const BODY_RECEIVED_REQUEST: u32 = 0;
pub const BODY_BUFFERED_REQUEST: u32 = 1;
// `envoy_dynamic_module_type_log_level`
pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_ERROR: u32 = 4;
pub const LOG_CRITICAL: u32 = 5;
// `envoy_dynamic_module_type_http_callout_init_result`
pub const CALLOUT_INIT_SUCCESS: u32 = 0;
// `envoy_dynamic_module_type_http_callout_result`
pub const CALLOUT_SUCCESS: u32 = 0;
// `envoy_dynamic_module_type_metadata_source`
pub const METADATA_ROUTE: u32 = 1;
// `envoy_dynamic_module_type_attribute_id`: `connection.tls_version` (the 32nd attribute).
pub const ATTRIBUTE_CONNECTION_TLS_VERSION: u32 = 31;
// `envoy_dynamic_module_type_metrics_result`
pub const METRICS_SUCCESS: u32 = 0;
// `..._on_http_filter_request_headers_status` (and response headers)
pub const HEADERS_CONTINUE: u32 = 0;
pub const HEADERS_STOP_ITERATION: u32 = 1;
// `..._on_http_filter_request_body_status` (and response body)
pub const BODY_CONTINUE: u32 = 0;
pub const BODY_STOP_ITERATION_AND_BUFFER: u32 = 1;
// `..._on_http_filter_request_trailers_status` (and response trailers)
pub const TRAILERS_CONTINUE: u32 = 0;
pub const TRAILERS_STOP_ITERATION: u32 = 1;
// `..._on_http_filter_local_reply_status`
pub const LOCAL_REPLY_CONTINUE: u32 = 0;

/// Declares the callbacks: linked against Envoy in the module, stubs (zeroed results) in unit
/// tests, which have no Envoy.
macro_rules! callbacks {
    ($(fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;)*) => {
        #[cfg(not(test))]
        extern "C" {
            $(pub fn $name($($arg: $ty),*) $(-> $ret)?;)*
        }
        $(
            #[cfg(test)]
            #[allow(unused_variables, clippy::missing_safety_doc)]
            pub unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
                // SAFETY: every result type here (integers, bools, pointers) is valid zeroed.
                unsafe { std::mem::zeroed() }
            }
        )*
    };
}

callbacks! {
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);

    fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoyPtr,
        header_type: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: u32,
        result_headers: *mut HttpHeader,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_add_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    fn envoy_dynamic_module_callback_http_get_body_size(
        filter: FilterEnvoyPtr,
        body_type: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: FilterEnvoyPtr,
        body_type: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: FilterEnvoyPtr,
        body_type: u32,
        result_buffer_vector: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_append_body(
        filter: FilterEnvoyPtr,
        body_type: u32,
        data: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_drain_body(
        filter: FilterEnvoyPtr,
        body_type: u32,
        number_of_bytes: usize,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_received_buffered_request_body(
        filter: FilterEnvoyPtr,
    ) -> bool;

    fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status_code: u32,
        headers_vector: *mut HttpHeader,
        headers_vector_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: FilterEnvoyPtr);

    fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: FilterEnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *mut HttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: ConfigEnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *mut HttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> u32;

    fn envoy_dynamic_module_callback_http_get_metadata_string(
        filter: FilterEnvoyPtr,
        metadata_source: u32,
        namespace: ModuleBuffer,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: FilterEnvoyPtr,
        attribute_id: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;

    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: ConfigEnvoyPtr,
    ) -> SchedulerPtr;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: SchedulerPtr,
        event_id: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler: SchedulerPtr);

    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        counter_id_ptr: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
}
