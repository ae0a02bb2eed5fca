//! `edge acl ...`: bootstrap, policies and tokens.

use crate::cli::{AclCommand, AclPolicyCommand, AclTokenCommand, Global, Output, TokenTypeArg};
use crate::output::{emit, short, table, time};
use anyhow::Context;
use edge_api::{AclPolicyApplyRequest, AclTokenCreateRequest, AclTokenCreated, AclTokenInfo};
use edge_spec::acl::TokenType;

pub async fn run(g: &Global, c: AclCommand) -> anyhow::Result<u8> {
    let api = super::client(g)?;
    match c {
        AclCommand::Bootstrap => {
            let t = api.acl_bootstrap().await?;
            show_created(g.output, &t)?;
        }
        AclCommand::Policy(AclPolicyCommand::Apply {
            name,
            file,
            description,
        }) => {
            let rules = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("read policy from stdin")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("read policy {}", file.display()))?
            };
            // Checked here first, so errors name the file the user wrote.
            edge_spec::acl::parse_policy(&file.display().to_string(), &rules)?;
            let r = api
                .acl_policy_apply(&name, &AclPolicyApplyRequest { description, rules })
                .await?;
            emit(g.output, &r, || {
                let mut t = table(&["Policy", "Index"]);
                t.add_row(vec![name.clone(), r.index.to_string()]);
                t
            })?;
        }
        AclCommand::Policy(AclPolicyCommand::Ls) => {
            let list = api.acl_policies().await?;
            emit(g.output, &list, || {
                let mut t = table(&["Name", "Description", "Modify Index"]);
                for p in &list {
                    t.add_row(vec![
                        p.name.clone(),
                        p.description.clone(),
                        p.modify_index.to_string(),
                    ]);
                }
                t
            })?;
        }
        AclCommand::Policy(AclPolicyCommand::Rm { name }) => {
            let r = api.acl_policy_delete(&name).await?;
            if g.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("policy {name} removed");
            }
        }
        AclCommand::Policy(AclPolicyCommand::Info { name }) => {
            let p = api.acl_policy(&name).await?;
            if g.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                println!("Name         = {}", p.name);
                println!("Description  = {}", p.description);
                println!("Modify Index = {}", p.modify_index);
                println!("Rules:\n{}", p.rules.trim_end());
            }
        }
        AclCommand::Token(AclTokenCommand::Create {
            name,
            policies,
            token_type,
            ttl,
        }) => {
            let req = AclTokenCreateRequest {
                name,
                token_type: match token_type {
                    TokenTypeArg::Client => TokenType::Client,
                    TokenTypeArg::Management => TokenType::Management,
                },
                policies,
                ttl_secs: ttl.map(|d| d.as_secs()),
            };
            let t = api.acl_token_create(&req).await?;
            show_created(g.output, &t)?;
        }
        AclCommand::Token(AclTokenCommand::Ls) => {
            let list = api.acl_tokens().await?;
            emit(g.output, &list, || {
                let mut t = table(&["Accessor", "Name", "Type", "Policies", "Expires"]);
                for k in &list {
                    t.add_row(vec![
                        short(&k.accessor_id).to_string(),
                        k.name.clone(),
                        k.token_type.as_str().to_string(),
                        k.policies.join(","),
                        expires(k),
                    ]);
                }
                t
            })?;
        }
        AclCommand::Token(AclTokenCommand::Revoke { accessor }) => {
            let r = api.acl_token_revoke(&accessor).await?;
            if g.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("token {accessor} revoked");
            }
        }
        AclCommand::Token(AclTokenCommand::Whoami) => {
            let t = api.acl_token_self().await?;
            if g.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                show_token(&t);
            }
        }
    }
    Ok(0)
}

fn expires(t: &AclTokenInfo) -> String {
    t.expiration_time.map_or_else(|| "never".to_string(), time)
}

fn show_token(t: &AclTokenInfo) {
    println!("Accessor ID  = {}", t.accessor_id);
    println!("Name         = {}", t.name);
    println!("Type         = {}", t.token_type.as_str());
    println!("Policies     = {}", t.policies.join(","));
    println!("Created      = {}", time(t.create_time));
    println!("Expires      = {}", expires(t));
}

fn show_created(out: Output, t: &AclTokenCreated) -> anyhow::Result<()> {
    if out == Output::Json {
        println!("{}", serde_json::to_string_pretty(t)?);
        return Ok(());
    }
    show_token(&t.token);
    println!("Secret ID    = {}", t.secret_id);
    eprintln!("keep the secret ID: it is shown only this once (use it as EDGE_TOKEN or --token)");
    Ok(())
}
