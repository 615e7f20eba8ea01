//! The KDL document as knuffel decodes it: typed top-level nodes with spans;
//! target bodies stay raw nodes and are decoded through the attribute table.

use knuffel::ast::{Literal, SpannedNode, TypeName};
use knuffel::decode::Context;
use knuffel::errors::DecodeError;
use knuffel::span::{Span as KSpan, Spanned};

pub type KStr = Spanned<String, KSpan>;

#[derive(knuffel::Decode, Debug)]
#[knuffel(span_type = knuffel::span::Span)]
pub enum TopNode {
    Variable(VariableNode),
    Function(FunctionNode),
    Group(GroupNode),
    Target(TargetNode),
}

/// `variable "NAME" default=… type="…" description="…"`
#[derive(knuffel::Decode, Debug)]
#[knuffel(span_type = knuffel::span::Span)]
pub struct VariableNode {
    #[knuffel(span)]
    pub span: KSpan,
    #[knuffel(argument)]
    pub name: KStr,
    #[knuffel(property)]
    pub default: Option<AnyScalar>,
    #[knuffel(property(name = "type"))]
    pub ty: Option<KStr>,
    #[knuffel(property)]
    pub description: Option<KStr>,
    /// `validation` children, decoded by `load::validations`.
    #[knuffel(children)]
    pub body: Vec<SpannedNode<KSpan>>,
}

/// `function "NAME" { … }`: children are decoded by `load::function`.
#[derive(knuffel::Decode, Debug)]
#[knuffel(span_type = knuffel::span::Span)]
pub struct FunctionNode {
    #[knuffel(span)]
    pub span: KSpan,
    #[knuffel(argument)]
    pub name: KStr,
    #[knuffel(children)]
    pub body: Vec<SpannedNode<KSpan>>,
}

/// `group "NAME" { targets …; description … }`
#[derive(knuffel::Decode, Debug)]
#[knuffel(span_type = knuffel::span::Span)]
pub struct GroupNode {
    #[knuffel(span)]
    pub span: KSpan,
    #[knuffel(argument)]
    pub name: KStr,
    #[knuffel(children)]
    pub items: Vec<GroupItem>,
}

#[derive(knuffel::Decode, Debug)]
#[knuffel(span_type = knuffel::span::Span)]
pub enum GroupItem {
    Targets(#[knuffel(arguments)] Vec<KStr>),
    Description(#[knuffel(argument)] KStr),
}

/// `target "NAME" { … }`: children are decoded by `load::target`.
#[derive(knuffel::Decode, Debug)]
#[knuffel(span_type = knuffel::span::Span)]
pub struct TargetNode {
    #[knuffel(span)]
    pub span: KSpan,
    #[knuffel(argument)]
    pub name: KStr,
    #[knuffel(children)]
    pub body: Vec<SpannedNode<KSpan>>,
}

/// Any scalar with its span (a variable default may be a string, boolean
/// or integer; its meaning depends on the variable's `type`).
#[derive(Debug)]
pub struct AnyScalar {
    pub literal: Literal,
    pub span: KSpan,
}

impl knuffel::traits::DecodeScalar<KSpan> for AnyScalar {
    fn type_check(_type_name: &Option<Spanned<TypeName, KSpan>>, _ctx: &mut Context<KSpan>) {}
    fn raw_decode(
        value: &Spanned<Literal, KSpan>,
        _ctx: &mut Context<KSpan>,
    ) -> Result<Self, DecodeError<KSpan>> {
        Ok(AnyScalar {
            literal: (**value).clone(),
            span: value.span().clone(),
        })
    }
}
