pub fn register(_ctx: &mut hcl::eval::Context<'_>) {}
