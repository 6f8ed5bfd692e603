//! `#[both_backends]`: the store's contract tests and the service's black-box tests run
//! unchanged on every store backend.
//!
//! ```ignore
//! #[sgde_test_macros::both_backends]
//! async fn versions_are_numbered() { let db = TestDatabase::new().await?; … }
//! ```
//! becomes the function itself plus a module of the same name with one `#[tokio::test]` per
//! backend (`versions_are_numbered::postgres`, `versions_are_numbered::sqlite`), each running the
//! function inside `sgde_store::testing::BACKEND.scope(..)`, which is where `TestDatabase::new`
//! (and so every harness built on it) learns which backend to create. Arguments are passed on to
//! `#[tokio::test]` (`#[both_backends(flavor = "multi_thread")]`).

use proc_macro::TokenStream;
use quote::quote;
use syn::{ItemFn, parse_macro_input};

#[proc_macro_attribute]
pub fn both_backends(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let function = parse_macro_input!(item as ItemFn);
    if function.sig.asyncness.is_none() || !function.sig.inputs.is_empty() {
        return syn::Error::new_spanned(
            &function.sig,
            "#[both_backends] takes an `async fn` without arguments",
        )
        .to_compile_error()
        .into();
    }
    let name = &function.sig.ident;
    let tokio_args = if args.is_empty() { quote!() } else { quote!((#args)) };
    quote! {
        #function

        mod #name {
            #[::tokio::test #tokio_args]
            async fn postgres() {
                ::sgde_store::testing::BACKEND
                    .scope(::sgde_store::testing::Backend::Postgres, super::#name())
                    .await
            }

            #[::tokio::test #tokio_args]
            async fn sqlite() {
                ::sgde_store::testing::BACKEND
                    .scope(::sgde_store::testing::Backend::Sqlite, super::#name())
                    .await
            }
        }
    }
    .into()
}
