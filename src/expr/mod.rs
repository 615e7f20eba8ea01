//! Expressions (`${ EXPR }`); this branch only carries bake's function library.
pub mod funcs;
