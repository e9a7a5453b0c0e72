//! Per-host confinement (docs/stores.md, "Confining each host"): the store's own access control
//! set up so that each host writes only its own keys, as an operator sets it up, on the real
//! servers of tests/src/stores.rs. tests/tests/confinement.rs checks what it allows and refuses.
//!
//! The key layout it is made for: every host reads all of `/netd/v1/` (its daemon lists and
//! watches the whole tree); host `h` writes its record, the exact key `/netd/v1/hosts/h`, and
//! everything under `/netd/v1/hosts/h/` (its endpoints and address claims); the hosts allowed to
//! create networks also write `/netd/v1/networks/` and `/netd/v1/vnis/`; an admin identity
//! (`netd host rm`, a `network rm` whose claims are other hosts') writes all of `/netd/v1/`.
//! The trailing slash matters: `/netd/v1/hosts/h1/` does not cover `/netd/v1/hosts/h10/`.
//!
//! - etcd ([`etcd`]): RBAC with a role per host. With `--client-cert-auth`, etcd takes the
//!   common name of the client's verified certificate as its user when the request carries no
//!   token (etcd's `AuthInfoFromTLS`), so a host's identity is its certificate and its users have
//!   no password. Applied through etcd's auth API (etcd-client), as `etcdctl` would: Debian's
//!   etcd-server ships no etcdctl.
//! - Consul ([`consul`]): ACL policies by key prefix and a token per host, made with Consul's
//!   own CLI (`consul acl policy create`, `consul acl token create`) and the management token.

use std::{collections::HashMap, path::Path};

use anyhow::Context as _;

/// Who gets which identity: each host its own (named as `netd daemon --hostname`), the hosts
/// among them allowed to create networks, and the admin identities.
#[derive(Clone, Debug, Default)]
pub struct Grants {
    pub hosts: Vec<String>,
    pub network_creators: Vec<String>,
    pub admins: Vec<String>,
}

impl Grants {
    pub fn new(hosts: &[&str], network_creators: &[&str], admins: &[&str]) -> Self {
        let owned = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        Self {
            hosts: owned(hosts),
            network_creators: owned(network_creators),
            admins: owned(admins),
        }
    }
}

/// Runs `work` on a runtime of its own in a thread inside the namespace at `netns` (where the
/// store listens), and returns its result.
pub fn run_in<T, F, Fut>(netns: &Path, work: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let netns = netns.to_path_buf();
    std::thread::spawn(move || -> anyhow::Result<T> {
        let _inside = netd::netns::enter(&netns)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(work())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the store client thread panicked"))?
}

pub mod etcd {
    //! etcd's RBAC: a role per host, one for network creation, one for the admin; a user per
    //! identity, named as its client certificate's common name, without a password.

    use etcd_client::{
        Certificate, Client, ConnectOptions, Identity, Permission, TlsOptions, UserAddOptions,
    };
    use netd_store::tls::TlsFiles;

    use super::Grants;
    use anyhow::Context as _;

    /// The role that may write networks and their VNIs.
    pub const NETWORKS_ROLE: &str = "netd-networks";
    /// The role that may write everything of netd's.
    pub const ADMIN_ROLE: &str = "netd-admin";

    /// Host `host`'s role.
    pub fn host_role(host: &str) -> String {
        format!("netd-host-{host}")
    }

    /// What host `host` may do: read everything of netd's (its daemon lists and watches the
    /// whole tree), write its record and what is under its own prefix.
    pub fn host_permissions(host: &str) -> Vec<Permission> {
        vec![
            Permission::read("/netd/v1/").with_prefix(),
            Permission::read_write(format!("/netd/v1/hosts/{host}")),
            Permission::read_write(format!("/netd/v1/hosts/{host}/")).with_prefix(),
        ]
    }

    /// What the networks role may do besides a host's own.
    pub fn networks_permissions() -> Vec<Permission> {
        vec![
            Permission::read_write("/netd/v1/networks/").with_prefix(),
            Permission::read_write("/netd/v1/vnis/").with_prefix(),
        ]
    }

    /// A plain etcd client of `endpoint` (`https://IP:2379`) with `files` (the CA and a client
    /// certificate): for what netd's store does not do (users, roles, leases of others).
    pub async fn connect_as(endpoint: &str, files: &TlsFiles) -> anyhow::Result<Client> {
        let read = |file: &Option<netd_store::tls::TlsFile>, what: &str| {
            let file = file.as_ref().with_context(|| format!("no {what} given"))?;
            std::fs::read(&file.path).with_context(|| format!("{}", file.path.display()))
        };
        let tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read(&files.ca, "CA")?))
            .identity(Identity::from_pem(
                read(&files.cert, "client certificate")?,
                read(&files.key, "client key")?,
            ));
        let options = ConnectOptions::new()
            .with_tls(tls)
            .with_connect_timeout(std::time::Duration::from_secs(5))
            .with_timeout(std::time::Duration::from_secs(10));
        Ok(Client::connect([endpoint], Some(options)).await?)
    }

    /// Adds user `name` without a password (`etcdctl user add NAME --no-password`): it is
    /// known by its certificate only.
    async fn add_user(root: &mut Client, name: &str) -> anyhow::Result<()> {
        root.auth_client()
            .user_add(name, "", Some(UserAddOptions::new().with_no_pwd()))
            .await
            .with_context(|| format!("user add {name}"))?;
        Ok(())
    }

    /// Applies the recipe with `root`, a client of an etcd without auth yet, and enables auth
    /// last: the `root` user (with etcd's `root` role) must exist for that, and is then the
    /// one whose certificate (CN=root) may change users and roles.
    pub async fn confine(root: &mut Client, grants: &Grants) -> anyhow::Result<()> {
        let grant = async |root: &mut Client, role: &str, perms: Vec<Permission>| {
            root.auth_client()
                .role_add(role)
                .await
                .with_context(|| format!("role add {role}"))?;
            for perm in perms {
                root.auth_client()
                    .role_grant_permission(role, perm)
                    .await
                    .with_context(|| format!("role grant-permission {role}"))?;
            }
            anyhow::Ok(())
        };
        let user_role = async |root: &mut Client, user: &str, role: &str| {
            root.auth_client()
                .user_grant_role(user, role)
                .await
                .with_context(|| format!("user grant-role {user} {role}"))
                .map(drop)
        };
        for host in &grants.hosts {
            let role = host_role(host);
            grant(root, &role, host_permissions(host)).await?;
            add_user(root, host).await?;
            user_role(root, host, &role).await?;
        }
        grant(root, NETWORKS_ROLE, networks_permissions()).await?;
        for creator in &grants.network_creators {
            user_role(root, creator, NETWORKS_ROLE).await?;
        }
        grant(
            root,
            ADMIN_ROLE,
            vec![Permission::read_write("/netd/v1/").with_prefix()],
        )
        .await?;
        for admin in &grants.admins {
            add_user(root, admin).await?;
            user_role(root, admin, ADMIN_ROLE).await?;
        }
        add_user(root, "root").await?;
        user_role(root, "root", "root").await?;
        root.auth_client()
            .auth_enable()
            .await
            .context("auth enable")?;
        Ok(())
    }
}

pub mod consul {
    //! Consul's ACLs: a policy per host, one for network creation, one for the admin; a token
    //! per identity, made with Consul's CLI and the management token.

    use super::{Grants, HashMap};
    use crate::stores::Consul;
    use anyhow::Context as _;

    /// The policy that may write networks and their VNIs.
    pub const NETWORKS_POLICY: &str = "netd-networks";
    /// The policy that may write everything of netd's.
    pub const ADMIN_POLICY: &str = "netd-admin";

    /// Host `host`'s policy.
    pub fn host_policy(host: &str) -> String {
        format!("netd-host-{host}")
    }

    /// Host `host`'s rules, for netd's keys under `prefix` in Consul (the URL's, `netd` by
    /// default): read everything of netd's, write its record and its own prefix. Its record is
    /// held by a session, created on the node of the server it talks to (netd's hosts are not
    /// Consul nodes), hence sessions on any node.
    pub fn host_rules(prefix: &str, host: &str) -> String {
        format!(
            "key_prefix \"{prefix}/v1/\" {{\n  policy = \"read\"\n}}\n\
             key \"{prefix}/v1/hosts/{host}\" {{\n  policy = \"write\"\n}}\n\
             key_prefix \"{prefix}/v1/hosts/{host}/\" {{\n  policy = \"write\"\n}}\n\
             session_prefix \"\" {{\n  policy = \"write\"\n}}\n"
        )
    }

    /// What the networks policy may do besides a host's own.
    pub fn networks_rules(prefix: &str) -> String {
        format!(
            "key_prefix \"{prefix}/v1/networks/\" {{\n  policy = \"write\"\n}}\n\
             key_prefix \"{prefix}/v1/vnis/\" {{\n  policy = \"write\"\n}}\n"
        )
    }

    /// Everything of netd's.
    pub fn admin_rules(prefix: &str) -> String {
        format!(
            "key_prefix \"{prefix}/v1/\" {{\n  policy = \"write\"\n}}\n\
             session_prefix \"\" {{\n  policy = \"write\"\n}}\n"
        )
    }

    /// `consul acl policy create -name NAME -rules @FILE`, the file written to `dir`.
    fn create_policy(
        consul: &Consul,
        master: &str,
        dir: &std::path::Path,
        name: &str,
        rules: &str,
    ) -> anyhow::Result<()> {
        let file = dir.join(format!("{name}.hcl"));
        std::fs::write(&file, rules)?;
        let rules = format!("@{}", file.display());
        consul.cli(
            master,
            &["acl", "policy", "create", "-name", name, "-rules", &rules],
        )?;
        Ok(())
    }

    /// `consul acl token create -description NAME -policy-name P ...`: the token's secret.
    fn create_token(
        consul: &Consul,
        master: &str,
        name: &str,
        policies: &[String],
    ) -> anyhow::Result<String> {
        let description = format!("netd {name}");
        let mut args = vec![
            "acl",
            "token",
            "create",
            "-description",
            &description,
            "-format",
            "json",
        ];
        for policy in policies {
            args.extend(["-policy-name", policy]);
        }
        let out = consul.cli(master, &args)?;
        let token: serde_json::Value =
            serde_json::from_str(&out).with_context(|| format!("token create answered {out}"))?;
        token["SecretID"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no SecretID in {out}"))
    }

    /// Applies the recipe to `consul` (ACLs on, denying by default) with its management token
    /// `master`, the policy files written to `dir`: the token of each host and admin, by name.
    pub fn confine(
        consul: &Consul,
        master: &str,
        dir: &std::path::Path,
        grants: &Grants,
    ) -> anyhow::Result<HashMap<String, String>> {
        let prefix = "netd";
        std::fs::create_dir_all(dir)?;
        create_policy(
            consul,
            master,
            dir,
            NETWORKS_POLICY,
            &networks_rules(prefix),
        )?;
        create_policy(consul, master, dir, ADMIN_POLICY, &admin_rules(prefix))?;
        let mut tokens = HashMap::new();
        for host in &grants.hosts {
            let policy = host_policy(host);
            create_policy(consul, master, dir, &policy, &host_rules(prefix, host))?;
            let mut policies = vec![policy];
            if grants.network_creators.contains(host) {
                policies.push(NETWORKS_POLICY.to_string());
            }
            tokens.insert(host.clone(), create_token(consul, master, host, &policies)?);
        }
        for admin in &grants.admins {
            tokens.insert(
                admin.clone(),
                create_token(consul, master, admin, &[ADMIN_POLICY.to_string()])?,
            );
        }
        Ok(tokens)
    }
}

/// The token of `name` in `tokens`, or an error naming it.
pub fn token<'a>(tokens: &'a HashMap<String, String>, name: &str) -> anyhow::Result<&'a str> {
    tokens
        .get(name)
        .map(String::as_str)
        .with_context(|| format!("no token made for {name}"))
}
