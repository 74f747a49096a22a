//! A room as its owner shard holds it, and the pure transition `Room::apply(action) -> outcome`.
//!
//! Invariants: `seq` increases by one per message; message ids increase (they come from the
//! owner's allocator); the in-memory history holds at most `history_max` messages and, but for
//! its newest message, at most `history_bytes_max` bytes of their encoded sizes (older ones
//! live only in the store); `history_bytes` is the sum of the window's encoded sizes;
//! membership never exceeds `members_max`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use smallvec::SmallVec;

use super::action::{NewMessage, NewRoom, RoomAction, Viewer};
use super::event::{json_str_len, Event, LastMessage, Message, RoomView};
use super::ids::{IdAllocator, MessageId, RoomId, Seq, UserId};
use super::Refusal;

/// What kind of room this is; decides who may post and how dialects show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RoomKind {
    /// A private group of members.
    Group,
    /// A two-person conversation.
    Direct,
    /// Anyone may join and read.
    Public,
    /// Only owners and moderators post.
    Announce,
}

impl RoomKind {
    /// Parses the REST name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "group" => RoomKind::Group,
            "direct" => RoomKind::Direct,
            "public" => RoomKind::Public,
            "announce" => RoomKind::Announce,
            _ => return None,
        })
    }

    /// The REST name.
    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::Group => "group",
            RoomKind::Direct => "direct",
            RoomKind::Public => "public",
            RoomKind::Announce => "announce",
        }
    }
}

/// A member's role in a room.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Role {
    /// Ordinary member.
    Member,
    /// May moderate messages and members.
    Moderator,
    /// Created the room; may delete it.
    Owner,
}

impl Role {
    /// Parses the REST name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "member" => Role::Member,
            "moderator" => Role::Moderator,
            "owner" => Role::Owner,
            _ => return None,
        })
    }

    /// The REST name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Moderator => "moderator",
            Role::Owner => "owner",
        }
    }
}

/// One member as the owner shard tracks it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// Role in the room.
    pub role: Role,
    /// The shards holding connections of this user (bit per shard), as the user's owner told us.
    pub shard_mask: u64,
}

/// A room, owned and mutated only by its owner shard.
#[derive(Debug)]
pub struct Room {
    /// Room id.
    pub id: RoomId,
    /// Room kind.
    pub kind: RoomKind,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Attributes, JSON object text.
    pub attributes: String,
    /// Members by user.
    pub members: HashMap<UserId, Member>,
    /// Creation time, ms.
    pub created_ms: u64,
    /// Last change, ms.
    pub updated_ms: u64,
    /// Seq of the newest message.
    pub last_seq: Seq,
    /// The newest messages, oldest first, at most `history_max` and `history_bytes_max`.
    pub history: VecDeque<Arc<Message>>,
    /// Bound of `history`, in messages.
    pub history_max: usize,
    /// Bound of `history`, in bytes of the messages' encoded sizes (`Message::encoded_len`);
    /// the newest message stays whatever its size.
    pub history_bytes_max: usize,
    /// The encoded sizes of `history`'s messages, summed.
    pub history_bytes: usize,
    /// Bound of `members`.
    pub members_max: usize,
}

/// What applying an action produced: the reply, the events, and membership changes the shard
/// must turn into subscriptions.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The view or messages returned to the caller.
    pub reply: Reply,
    /// Events for every member's connections, in order.
    pub events: SmallVec<[Event; 2]>,
    /// A user who became a member.
    pub joined: Option<UserId>,
    /// A user who stopped being a member, with the shards its connections were on.
    pub left: Option<(UserId, u64)>,
    /// The room was deleted; the shard drops it after broadcasting.
    pub deleted: bool,
    /// A message the store must write (new or changed).
    pub stored: Option<Arc<Message>>,
    /// The oldest messages, pushed out of the in-memory window by a new or larger one (oldest
    /// first, as they were last changed).
    pub evicted: SmallVec<[Arc<Message>; 1]>,
    /// How many of `evicted` the byte bound pushed out (the count bound alone would have kept
    /// them).
    pub evicted_for_bytes: usize,
}

/// The caller's answer.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub enum Reply {
    /// Nothing to return.
    #[default]
    Empty,
    /// A room.
    Room(Arc<RoomView>),
    /// A message.
    Message(Arc<Message>),
    /// A history page.
    Messages(Page),
}

/// A page of history.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Page {
    /// Ascending by id.
    pub messages: Vec<Arc<Message>>,
    /// The page ended early at its byte bound: more messages follow in the direction paged
    /// (after the last one when paging forward, before the first when paging back).
    pub truncated: bool,
}

impl Page {
    /// Takes messages from `candidates` (in paging order: ascending when paging forward,
    /// descending when paging back) until `limit` of them or until the next would bring the
    /// page's encoded size over `bytes_max` (the first is always taken); the result ascends.
    pub fn collect(
        candidates: impl Iterator<Item = Arc<Message>>,
        limit: usize,
        bytes_max: usize,
        descending: bool,
    ) -> Page {
        let mut page = Page::default();
        let mut bytes = 0usize;
        for message in candidates {
            if page.messages.len() >= limit {
                break;
            }
            let size = message.encoded_len();
            if !page.messages.is_empty() && bytes.saturating_add(size) > bytes_max {
                page.truncated = true;
                break;
            }
            bytes = bytes.saturating_add(size);
            page.messages.push(message);
        }
        if descending {
            page.messages.reverse();
        }
        page
    }
}

impl Room {
    /// A new room with `spec`'s members; `creator` (a user viewer) becomes its owner.
    pub fn create(
        id: RoomId,
        spec: NewRoom,
        creator: &Viewer,
        now_ms: u64,
        history_max: usize,
        history_bytes_max: usize,
        members_max: usize,
    ) -> Result<Room, Refusal> {
        let mut members = HashMap::with_capacity(spec.members.len() + 1);
        for (user, role) in spec.members {
            members.insert(user, Member { role, shard_mask: 0 });
        }
        if let Viewer::User(u) = creator {
            members.insert(u.clone(), Member { role: Role::Owner, shard_mask: 0 });
        }
        if members.len() > members_max {
            return Err(Refusal::Full("too many members"));
        }
        if spec.kind == RoomKind::Direct && members.len() > 2 {
            return Err(Refusal::Invalid("a direct room has at most two members".into()));
        }
        Ok(Room {
            id,
            kind: spec.kind,
            name: spec.name,
            description: spec.description,
            attributes: spec.attributes,
            members,
            created_ms: now_ms,
            updated_ms: now_ms,
            last_seq: Seq(0),
            history: VecDeque::new(),
            history_max,
            history_bytes_max,
            history_bytes: 0,
            members_max,
        })
    }

    /// A snapshot for events and replies.
    pub fn view(&self) -> Arc<RoomView> {
        let mut members: Vec<(UserId, Role)> =
            self.members.iter().map(|(u, m)| (u.clone(), m.role)).collect();
        members.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let last_message = self
            .history
            .iter()
            .rev()
            .find(|m| m.deleted_ms.is_none())
            .map(|m| LastMessage { id: m.id, created_ms: m.created_ms, author: m.author.clone() });
        Arc::new(RoomView {
            id: self.id,
            kind: self.kind,
            name: self.name.clone(),
            description: self.description.clone(),
            attributes: self.attributes.clone(),
            members,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            last_seq: self.last_seq,
            last_message,
            summary: None,
        })
    }

    /// The viewer's role, or `None` for non-members; a service acts as an owner.
    fn role_of(&self, viewer: &Viewer) -> Option<Role> {
        match viewer {
            Viewer::Service => Some(Role::Owner),
            Viewer::User(u) => self.members.get(u).map(|m| m.role),
        }
    }

    /// Refuses unless the viewer may see the room: members, services, anyone for public rooms.
    fn check_visible(&self, viewer: &Viewer) -> Result<Option<Role>, Refusal> {
        let role = self.role_of(viewer);
        if role.is_none() && self.kind != RoomKind::Public {
            return Err(Refusal::NotFound("no such room"));
        }
        Ok(role)
    }

    /// Applies `action` for `viewer`. `ids` allocates message ids; `now_ms` stamps changes.
    pub fn apply(
        &mut self,
        viewer: &Viewer,
        action: RoomAction,
        ids: &mut IdAllocator,
        now_ms: u64,
    ) -> Result<Outcome, Refusal> {
        self.apply_with_parent(viewer, action, ids, now_ms, None)
    }

    /// `apply`, with `parent`: the parent of the comment `action` posts or deletes when it is
    /// older than the window (the owner read it from the store, see
    /// [`Room::outside_parent`]). Its comment count changes as it would in the window
    /// (`parent` is updated, and a `MessageUpdated` of it is among the events); a post whose
    /// parent is neither in the window nor given (or not this room's, or deleted) is refused.
    pub fn apply_with_parent(
        &mut self,
        viewer: &Viewer,
        action: RoomAction,
        ids: &mut IdAllocator,
        now_ms: u64,
        parent: Option<&mut Arc<Message>>,
    ) -> Result<Outcome, Refusal> {
        let role = self.check_visible(viewer)?;
        let is_moderator = role.is_some_and(|r| r >= Role::Moderator);
        match action {
            RoomAction::Get => {
                Ok(Outcome { reply: Reply::Room(self.view()), ..Outcome::default() })
            }
            RoomAction::History { after, before, limit, bytes_max } => Ok(Outcome {
                reply: Reply::Messages(self.history(after, before, limit, bytes_max)),
                ..Outcome::default()
            }),
            RoomAction::Update(patch) => {
                if !is_moderator {
                    return Err(Refusal::Forbidden(
                        "only owners and moderators may change the room",
                    ));
                }
                if let Some(name) = patch.name {
                    self.name = name;
                }
                if let Some(description) = patch.description {
                    self.description = description;
                }
                if let Some(attributes) = patch.attributes {
                    self.attributes = attributes;
                }
                self.updated_ms = now_ms.max(self.updated_ms);
                let view = self.view();
                let mut out = Outcome { reply: Reply::Room(view.clone()), ..Outcome::default() };
                out.events.push(Event::RoomUpdated(view));
                Ok(out)
            }
            RoomAction::Delete => {
                if role != Some(Role::Owner) {
                    return Err(Refusal::Forbidden("only the owner may delete the room"));
                }
                let mut out = Outcome { deleted: true, ..Outcome::default() };
                out.events.push(Event::RoomDeleted { room: self.id });
                Ok(out)
            }
            RoomAction::PutMember { user, role: new_role } => {
                self.put_member(viewer, is_moderator, user, new_role, now_ms)
            }
            RoomAction::RemoveMember(user) => {
                self.remove_member(viewer, is_moderator, user, now_ms)
            }
            RoomAction::Post(new) => self.post(viewer, role, new, ids, now_ms, parent),
            RoomAction::Edit { message, text, bytes_max } => {
                self.edit(viewer, message, text, bytes_max, now_ms)
            }
            RoomAction::DeleteMessage(message) => {
                self.delete_message(viewer, is_moderator, message, now_ms, parent)
            }
        }
    }

    /// The id of the parent `action` would change (the parent of a comment it posts, or of a
    /// comment in the window it deletes) when that parent is older than the window: the owner
    /// reads it from the store and passes it to `apply_with_parent`.
    pub fn outside_parent(&self, action: &RoomAction) -> Option<MessageId> {
        let parent = match action {
            RoomAction::Post(new) => new.parent_id,
            RoomAction::DeleteMessage(id) => {
                self.window_index(*id).map(|i| self.history[i].parent_id)?
            }
            _ => return None,
        };
        (parent != MessageId(0) && self.window_index(parent).is_none()).then_some(parent)
    }

    /// Where message `id` is in the window (deleted ones included).
    fn window_index(&self, id: MessageId) -> Option<usize> {
        self.history.binary_search_by(|m| m.id.cmp(&id)).ok()
    }

    fn history(
        &self,
        after: Option<MessageId>,
        before: Option<MessageId>,
        limit: usize,
        bytes_max: usize,
    ) -> Page {
        let in_range = |m: &&Arc<Message>| {
            after.is_none_or(|a| m.id > a)
                && before.is_none_or(|b| m.id < b)
                && m.deleted_ms.is_none()
        };
        if after.is_none() && before.is_some() {
            let newest = self.history.iter().rev().filter(in_range).cloned();
            Page::collect(newest, limit, bytes_max, true)
        } else {
            let oldest = self.history.iter().filter(in_range).cloned();
            Page::collect(oldest, limit, bytes_max, false)
        }
    }

    fn put_member(
        &mut self,
        viewer: &Viewer,
        is_moderator: bool,
        user: UserId,
        role: Role,
        now_ms: u64,
    ) -> Result<Outcome, Refusal> {
        let joining_self =
            viewer.user() == Some(&user) && self.kind == RoomKind::Public && role == Role::Member;
        if !is_moderator && !joining_self {
            return Err(Refusal::Forbidden("only owners and moderators may add members"));
        }
        if role == Role::Owner
            && !matches!(viewer, Viewer::Service)
            && self.role_of(viewer) != Some(Role::Owner)
        {
            return Err(Refusal::Forbidden("only an owner may make owners"));
        }
        let mut out = Outcome::default();
        match self.members.get_mut(&user) {
            Some(member) => member.role = role,
            None => {
                if self.members.len() >= self.members_max {
                    return Err(Refusal::Full("the room has its maximum number of members"));
                }
                if self.kind == RoomKind::Direct && self.members.len() >= 2 {
                    return Err(Refusal::Conflict("a direct room has at most two members".into()));
                }
                self.members.insert(user.clone(), Member { role, shard_mask: 0 });
                out.joined = Some(user);
            }
        }
        self.updated_ms = now_ms.max(self.updated_ms);
        let view = self.view();
        out.reply = Reply::Room(view.clone());
        out.events.push(Event::RoomUpdated(view));
        Ok(out)
    }

    fn remove_member(
        &mut self,
        viewer: &Viewer,
        is_moderator: bool,
        user: UserId,
        now_ms: u64,
    ) -> Result<Outcome, Refusal> {
        if !is_moderator && viewer.user() != Some(&user) {
            return Err(Refusal::Forbidden("only owners and moderators may remove other members"));
        }
        let Some(member) = self.members.remove(&user) else {
            return Err(Refusal::NotFound("no such member"));
        };
        self.updated_ms = now_ms.max(self.updated_ms);
        let mut out = Outcome { left: Some((user, member.shard_mask)), ..Outcome::default() };
        out.events.push(Event::RoomUpdated(self.view()));
        Ok(out)
    }

    fn post(
        &mut self,
        viewer: &Viewer,
        role: Option<Role>,
        new: NewMessage,
        ids: &mut IdAllocator,
        now_ms: u64,
        outside: Option<&mut Arc<Message>>,
    ) -> Result<Outcome, Refusal> {
        let author_role = match viewer {
            Viewer::Service => self.members.get(&new.author).map(|m| m.role).or(Some(Role::Owner)),
            Viewer::User(_) => role,
        };
        let Some(author_role) = author_role else {
            return Err(Refusal::Forbidden("only members may post"));
        };
        if self.kind == RoomKind::Announce && author_role < Role::Moderator {
            return Err(Refusal::Forbidden("only owners and moderators post in an announce room"));
        }
        let mut out = Outcome::default();
        if new.parent_id != MessageId(0) {
            let room = self.id;
            let parent = match self.find_mut(new.parent_id) {
                Some(parent) => parent,
                None => outside
                    .filter(|p| p.id == new.parent_id && p.room == room && p.deleted_ms.is_none())
                    .ok_or(Refusal::NotFound("no such parent message"))?,
            };
            let p = Arc::make_mut(parent);
            p.comment_count += 1;
            p.modified_ms = now_ms;
            out.events.push(Event::MessageUpdated(parent.clone()));
        }
        self.last_seq = self.last_seq.next();
        let message = Arc::new(Message {
            id: MessageId(ids.next_id()),
            seq: self.last_seq,
            room: self.id,
            author: new.author,
            text: new.text,
            parent_id: new.parent_id,
            client_message_id: new.client_message_id,
            kind: new.kind,
            attachments: new.attachments,
            attributes: new.attributes,
            comment_count: 0,
            created_ms: now_ms,
            edited_ms: now_ms,
            modified_ms: now_ms,
            deleted_ms: None,
        });
        self.history_bytes = self.history_bytes.saturating_add(message.encoded_len());
        self.history.push_back(message.clone());
        self.trim_window(&mut out);
        out.events.insert(0, Event::MessageCreated(message.clone()));
        out.stored = Some(message.clone());
        out.reply = Reply::Message(message);
        Ok(out)
    }

    fn find_mut(&mut self, id: MessageId) -> Option<&mut Arc<Message>> {
        let index = self.history.binary_search_by(|m| m.id.cmp(&id)).ok()?;
        let message = &mut self.history[index];
        message.deleted_ms.is_none().then_some(message)
    }

    fn edit(
        &mut self,
        viewer: &Viewer,
        id: MessageId,
        text: String,
        bytes_max: usize,
        now_ms: u64,
    ) -> Result<Outcome, Refusal> {
        let message = self.find_mut(id).ok_or(Refusal::NotFound("no such message"))?;
        let before = message.encoded_len();
        let mut out = edit_message(viewer, message, text, bytes_max, now_ms)?;
        let after = message.encoded_len();
        self.history_bytes = self.history_bytes.saturating_sub(before).saturating_add(after);
        self.trim_window(&mut out);
        Ok(out)
    }

    /// Sets the window to `history` (oldest first: a room rebuilt from the store) and trims
    /// it to its bounds; returns what it trimmed.
    pub fn set_window(&mut self, history: VecDeque<Arc<Message>>) -> SmallVec<[Arc<Message>; 1]> {
        self.history_bytes = history.iter().map(|m| m.encoded_len()).sum();
        self.history = history;
        let mut out = Outcome::default();
        self.trim_window(&mut out);
        out.evicted
    }

    /// Evicts the oldest messages while the window is over either bound (keeping the newest
    /// one, whatever its size) into `out.evicted`.
    fn trim_window(&mut self, out: &mut Outcome) {
        while self.history.len() > 1
            && (self.history.len() > self.history_max
                || self.history_bytes > self.history_bytes_max)
        {
            let by_count = self.history.len() > self.history_max;
            let Some(oldest) = self.history.pop_front() else {
                break;
            };
            self.history_bytes = self.history_bytes.saturating_sub(oldest.encoded_len());
            if !by_count {
                out.evicted_for_bytes += 1;
            }
            out.evicted.push(oldest);
        }
    }

    fn delete_message(
        &mut self,
        viewer: &Viewer,
        is_moderator: bool,
        id: MessageId,
        now_ms: u64,
        outside: Option<&mut Arc<Message>>,
    ) -> Result<Outcome, Refusal> {
        let message = self.find_mut(id).ok_or(Refusal::NotFound("no such message"))?;
        let before = message.encoded_len();
        let mut out = delete_message(viewer, is_moderator, message, now_ms)?;
        let after = message.encoded_len();
        let parent_id = message.parent_id;
        self.history_bytes = self.history_bytes.saturating_sub(before).saturating_add(after);
        if parent_id != MessageId(0) {
            let room = self.id;
            let parent = match self.find_mut(parent_id) {
                Some(parent) => Some(parent),
                None => outside.filter(|p| p.id == parent_id && p.room == room),
            };
            if let Some(parent) = parent {
                uncount_comment(parent, now_ms, &mut out);
            }
        }
        Ok(out)
    }

    /// Applies an edit or a deletion (`action`) for `viewer` to `message` of this room, which
    /// is older than the in-memory window (read from the store by the owner): the same rules
    /// and the same outcome as for a message in the window. The parent of a deleted comment is
    /// older still: its comment count changes when the owner read it (`parent`).
    pub fn apply_detached(
        &mut self,
        viewer: &Viewer,
        action: RoomAction,
        message: &mut Arc<Message>,
        now_ms: u64,
        parent: Option<&mut Arc<Message>>,
    ) -> Result<Outcome, Refusal> {
        let role = self.check_visible(viewer)?;
        if message.room != self.id || message.deleted_ms.is_some() {
            return Err(Refusal::NotFound("no such message"));
        }
        let is_moderator = role.is_some_and(|r| r >= Role::Moderator);
        match action {
            RoomAction::Edit { text, bytes_max, .. } => {
                edit_message(viewer, message, text, bytes_max, now_ms)
            }
            RoomAction::DeleteMessage(_) => {
                let mut out = delete_message(viewer, is_moderator, message, now_ms)?;
                let (room, parent_id) = (self.id, message.parent_id);
                let parent = parent
                    .filter(|p| parent_id != MessageId(0) && p.id == parent_id && p.room == room);
                if let Some(parent) = parent {
                    uncount_comment(parent, now_ms, &mut out);
                }
                Ok(out)
            }
            _ => Err(Refusal::Invalid("only edits and deletions address a message".into())),
        }
    }
}

/// One comment fewer on `parent` (a deleted comment's, unless deleted itself), with its
/// `MessageUpdated` in `out`.
fn uncount_comment(parent: &mut Arc<Message>, now_ms: u64, out: &mut Outcome) {
    if parent.deleted_ms.is_some() {
        return;
    }
    let p = Arc::make_mut(parent);
    p.comment_count = p.comment_count.saturating_sub(1);
    p.modified_ms = now_ms;
    out.events.push(Event::MessageUpdated(parent.clone()));
}

/// The edit of a live `message` (in the window or read from the store): only its author (or a
/// service) may edit it, and the result must stay within `bytes_max`.
fn edit_message(
    viewer: &Viewer,
    message: &mut Arc<Message>,
    text: String,
    bytes_max: usize,
    now_ms: u64,
) -> Result<Outcome, Refusal> {
    if let Viewer::User(u) = viewer {
        if &message.author != u {
            return Err(Refusal::Forbidden("only the author may edit a message"));
        }
    }
    let size = message.encoded_len() - json_str_len(&message.text) + json_str_len(&text);
    if size > bytes_max {
        return Err(Refusal::too_large(size, bytes_max));
    }
    let m = Arc::make_mut(message);
    m.text = text;
    m.edited_ms = now_ms.max(m.created_ms);
    m.modified_ms = m.edited_ms;
    let message = message.clone();
    let mut out = Outcome {
        reply: Reply::Message(message.clone()),
        stored: Some(message.clone()),
        ..Outcome::default()
    };
    out.events.push(Event::MessageUpdated(message));
    Ok(out)
}

/// The deletion of a live `message` (in the window or read from the store): only its author, a
/// moderator or a service may delete it. Its parent's comment count is the caller's.
fn delete_message(
    viewer: &Viewer,
    is_moderator: bool,
    message: &mut Arc<Message>,
    now_ms: u64,
) -> Result<Outcome, Refusal> {
    if !is_moderator && viewer.user() != Some(&message.author) {
        return Err(Refusal::Forbidden("only the author or a moderator may delete a message"));
    }
    let m = Arc::make_mut(message);
    m.deleted_ms = Some(now_ms);
    m.modified_ms = now_ms;
    m.text.clear();
    let (room, id, parent_id) = (m.room, m.id, m.parent_id);
    let mut out = Outcome { stored: Some(message.clone()), ..Outcome::default() };
    out.events.push(Event::MessageDeleted { room, message: id, parent_id });
    Ok(out)
}

#[cfg(test)]
#[path = "room_tests.rs"]
mod tests;
