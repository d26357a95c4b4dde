//! The people clearflow knows: users with their roles, email addresses and locales.
//!
//! Read from the TOML file named by `[directory] users` and reloaded on SIGHUP.
//!
//! ```toml
//! [[users]]
//! id = "wang.fang"
//! name = "王芳"
//! email = "wang.fang@example.org"
//! roles = ["intake"]
//! locale = "zh-CN"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// One user.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login id, unique.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Email address.
    pub email: String,
    /// Roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Preferred locale (`zh-CN` or `en`).
    #[serde(default)]
    pub locale: Option<String>,
    /// The user's leader, told when this user's tasks are overdue.
    #[serde(default)]
    pub leader: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    users: Vec<User>,
}

/// A problem with the users file; [`Directory::load`] reports every one at once.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The file cannot be read.
    #[error("{file}: {source}")]
    Read {
        /// The users file.
        file: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape (the message gives the line
    /// and column).
    #[error("{file}: {source}")]
    Parse {
        /// The users file.
        file: String,
        /// What failed, with its position.
        source: toml::de::Error,
    },
    /// A user's email address has no `@`.
    #[error("{file}: user `{user}` has no valid email address")]
    BadEmail {
        /// The users file.
        file: String,
        /// The user id.
        user: String,
    },
    /// Two users have the same id.
    #[error("{file}: duplicate user `{user}`")]
    Duplicate {
        /// The users file.
        file: String,
        /// The user id.
        user: String,
    },
}

/// Every problem of a users file, joined for a one-line message.
pub fn join(errors: &[DirectoryError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The users, by id.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    users: BTreeMap<String, User>,
}

impl Directory {
    /// Reads the users file; every problem at once.
    pub fn load(path: &Path) -> Result<Directory, Vec<DirectoryError>> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| {
            vec![DirectoryError::Read {
                file: file.clone(),
                source,
            }]
        })?;
        let parsed: File = toml::from_str(&text).map_err(|source| {
            vec![DirectoryError::Parse {
                file: file.clone(),
                source,
            }]
        })?;
        let mut problems = Vec::new();
        let mut users = BTreeMap::new();
        for u in parsed.users {
            if !u.email.contains('@') {
                problems.push(DirectoryError::BadEmail {
                    file: file.clone(),
                    user: u.id.clone(),
                });
            }
            if users.contains_key(&u.id) {
                problems.push(DirectoryError::Duplicate {
                    file: file.clone(),
                    user: u.id.clone(),
                });
            }
            users.insert(u.id.clone(), u);
        }
        if problems.is_empty() {
            Ok(Directory { users })
        } else {
            Err(problems)
        }
    }

    /// A user by id.
    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id)
    }

    /// The members of a role, in id order.
    pub fn members(&self, role: &str) -> Vec<&User> {
        self.users
            .values()
            .filter(|u| u.roles.iter().any(|r| r == role))
            .collect()
    }

    /// A user by email address.
    pub fn by_email(&self, email: &str) -> Option<&User> {
        self.users
            .values()
            .find(|u| u.email.eq_ignore_ascii_case(email))
    }

    /// Every user.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }
}
